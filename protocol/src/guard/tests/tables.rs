//! Facts about the tables themselves.

use kafka_protocol::messages::{
    ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, FetchRequest, InitProducerIdRequest, ListOffsetsRequest,
    MetadataRequest, OffsetForLeaderEpochRequest, ProduceRequest,
};
use kafka_protocol::protocol::{Message as CrateMessage, VersionRange};

use super::{Direction, every_case};
use crate::guard::schema::{Kind, Struct};
use crate::guard::{GuardError, check_request, guards_request};

/// The first APIs the broker serves, with the versions the crate decodes for each request.
const FIRST_APIS: [(i16, VersionRange); 11] = [
    (18, ApiVersionsRequest::VERSIONS),
    (3, MetadataRequest::VERSIONS),
    (19, CreateTopicsRequest::VERSIONS),
    (20, DeleteTopicsRequest::VERSIONS),
    (37, CreatePartitionsRequest::VERSIONS),
    (0, ProduceRequest::VERSIONS),
    (1, FetchRequest::VERSIONS),
    (2, ListOffsetsRequest::VERSIONS),
    (22, InitProducerIdRequest::VERSIONS),
    (23, OffsetForLeaderEpochRequest::VERSIONS),
    (60, DescribeClusterRequest::VERSIONS),
];

#[test]
fn first_apis_are_guarded_in_every_version_the_crate_decodes_and_no_other() {
    for (api_key, versions) in FIRST_APIS {
        for version in versions.min..=versions.max {
            assert!(guards_request(api_key, version), "api {api_key} v{version}");
        }
        assert!(
            !guards_request(api_key, versions.max + 1),
            "api {api_key} v{}",
            versions.max + 1
        );
        let too_new = check_request(api_key, versions.max + 1, &[]);
        assert_eq!(
            too_new,
            Err(GuardError::UnsupportedVersion {
                api_key,
                version: versions.max + 1
            })
        );
    }
    // LeaderAndIsr (4) is a controller-to-broker API the broker never serves.
    assert_eq!(
        check_request(4, 0, &[]),
        Err(GuardError::UnknownApi { api_key: 4 })
    );
}

#[test]
fn each_api_has_one_request_and_one_response_table() {
    for direction in [Direction::Request, Direction::Response] {
        let mut keys: Vec<i16> = direction
            .messages()
            .iter()
            .map(|message| message.api_key)
            .collect();
        let count = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(
            keys.len(),
            count,
            "{direction:?}: an api key has two tables"
        );
    }
    let requests: Vec<i16> = Direction::Request
        .messages()
        .iter()
        .map(|message| message.api_key)
        .collect();
    let responses: Vec<i16> = Direction::Response
        .messages()
        .iter()
        .map(|message| message.api_key)
        .collect();
    assert_eq!(requests, responses);
}

/// The crate refuses a version outside its range before reading a byte, with this message.
const CRATE_VERSION_REFUSAL: &str = "specified version not supported";

#[test]
fn tables_cover_exactly_the_versions_the_crate_decodes() {
    for case in every_case() {
        let outcome = case.decode(&[]);
        let refused_version = outcome
            .as_ref()
            .is_err_and(|error| error.contains(CRATE_VERSION_REFUSAL));
        assert!(
            !refused_version,
            "{case}: the crate does not decode this version"
        );
    }
    for direction in [Direction::Request, Direction::Response] {
        for message in direction.messages() {
            for version in [message.versions.min - 1, message.versions.max + 1] {
                let outcome = super::crate_decode(direction, message.api_key, version, &[]);
                let error = outcome.err().unwrap_or_default();
                assert!(
                    error.contains(CRATE_VERSION_REFUSAL),
                    "{} v{version}: {error}",
                    message.body.name
                );
            }
        }
    }
}

/// The array bound (count at most the bytes left) never refuses a body the crate decodes only
/// if every element takes at least one byte. Check that for every array the tables hold.
#[test]
fn every_array_element_occupies_at_least_one_byte() {
    for case in every_case() {
        let flexible = case.message.flexible.contains(case.version);
        let mut narrow = Vec::new();
        check_elements(case.message.body, case.version, flexible, &mut narrow);
        assert!(
            narrow.is_empty(),
            "{case}: zero-width elements in {narrow:?}"
        );
    }
}

fn check_elements(schema: &Struct, version: i16, flexible: bool, narrow: &mut Vec<&'static str>) {
    let fields = schema
        .fields
        .iter()
        .filter(|field| field.versions.contains(version));
    let tagged = schema
        .tagged_fields
        .iter()
        .filter(|tagged| flexible && tagged.versions.contains(version));
    for kind in fields
        .map(|field| &field.kind)
        .chain(tagged.map(|tagged| &tagged.kind))
    {
        match kind {
            Kind::Array { element, .. } => {
                if minimum_width(element, version, flexible) == 0 {
                    narrow.push(schema.name);
                }
                if let Kind::Struct(element) = element {
                    check_elements(element, version, flexible, narrow);
                }
            }
            Kind::Struct(inner) => check_elements(inner, version, flexible, narrow),
            _ => {}
        }
    }
}

fn minimum_width(kind: &Kind, version: i16, flexible: bool) -> usize {
    match kind {
        Kind::Bool | Kind::Int8 | Kind::Optional(_) => 1,
        Kind::Int16 | Kind::UInt16 => 2,
        Kind::Int32 => 4,
        Kind::Int64 | Kind::Float64 => 8,
        Kind::Uuid => 16,
        Kind::String { .. } | Kind::Bytes { .. } | Kind::Array { .. } => 1,
        Kind::Struct(schema) => {
            let fields = schema
                .fields
                .iter()
                .filter(|field| field.versions.contains(version));
            let tagged_section = usize::from(flexible);
            fields
                .map(|field| minimum_width(&field.kind, version, flexible))
                .sum::<usize>()
                + tagged_section
        }
    }
}
