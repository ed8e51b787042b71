package main

// Group admin, the end of the admin scenario: the commits scenario's group, whose members have
// all left, is described and listed, then deleted.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
)

const groupAdminWait = 10 * time.Second

func isGroupNotFound(err error) bool {
	return errors.Is(err, kerr.GroupIDNotFound) || errors.Is(err, sarama.ErrGroupIDNotFound)
}

func (r *run) groupAdmin(group, topic string) {
	const described = "admin: describe group (DescribeGroups): the commits group is Empty, protocol type consumer, no members"
	const listed = "admin: list groups (ListGroups) lists the commits group, protocol type consumer"
	const deleted = "admin: delete the empty group (DeleteGroups)"
	const gone = "admin: a deleted group is no longer listed and has no committed offsets"
	if group == "" {
		r.checks.Fail(described, "no group: the commits scenario did not get as far as creating one")
		return
	}
	// The last member left with LeaveGroup before; allow the coordinator a moment anyway.
	var info GroupInfo
	var err error
	waitUntil(NewDeadline(groupAdminWait), 200*time.Millisecond, func() bool {
		err = r.call(func(ctx context.Context) error {
			var err error
			info, err = r.d.DescribeGroup(ctx, group)
			return err
		})
		return err == nil && info.State == "Empty"
	})
	if r.checks.Err(described, err, "DescribeGroups "+group) {
		r.checks.Check(described, info.State == "Empty" && info.ProtocolType == "consumer" && info.Members == 0,
			"described state %q, protocol type %q, protocol %q, %d members", info.State, info.ProtocolType, info.Protocol, info.Members)
	}
	var groups map[string]string
	err = r.call(func(ctx context.Context) error {
		var err error
		groups, err = r.d.ListGroups(ctx)
		return err
	})
	if r.checks.Err(listed, err, "ListGroups") {
		protocolType, ok := groups[group]
		r.checks.Check(listed, ok && protocolType == "consumer", "%s: listed %v, protocol type %q (%d groups listed)",
			group, ok, protocolType, len(groups))
	}
	err = r.call(func(ctx context.Context) error { return r.d.DeleteGroup(ctx, group) })
	if !r.checks.Err(deleted, err, "DeleteGroups "+group) {
		return
	}
	var stillListed bool
	listed2 := waitUntil(NewDeadline(groupAdminWait), 200*time.Millisecond, func() bool {
		err = r.call(func(ctx context.Context) error {
			var err error
			groups, err = r.d.ListGroups(ctx)
			return err
		})
		_, stillListed = groups[group]
		return err == nil && !stillListed
	})
	if r.checks.Err(gone, err, "ListGroups after DeleteGroups") {
		r.checks.Check(gone, listed2, "%s still listed %v after DeleteGroups", group, groupAdminWait)
	}
	var committed map[int32]int64
	err = r.call(func(ctx context.Context) error {
		var err error
		committed, err = r.d.Committed(ctx, group, topic, r.a.partitions)
		return err
	})
	// Kafka answers -1 for every partition, or GROUP_ID_NOT_FOUND; either says nothing is left.
	if !isGroupNotFound(err) && r.checks.Err(gone, err, "OffsetFetch after DeleteGroups") {
		for p, o := range committed {
			r.checks.Check(gone, o == -1, "partition %d: committed offset %d still there", p, o)
		}
	}
	r.progress("group %s described (%s), listed, deleted", group, fmt.Sprintf("%s/%s", info.State, info.ProtocolType))
}
