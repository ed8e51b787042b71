/*
 * librdkafka's mock cluster as the peer for scripts/bench, built against the same librdkafka as the
 * rdkafka_performance client.
 *
 * Why not scripts/mock-cluster.py: the mock cluster has no CreateTopics handler and keeps only the last
 * 5 MiB (or 100,000 batches) of each partition, so a fetch benchmark of 1,000,000 x 100-byte records
 * needs topics with many partitions, which only the C API (rd_kafka_mock_topic_create) can make.
 *
 *   mock_cluster serve [--brokers N] [--topic NAME:PARTITIONS]... [--ignore-stdin]
 *       Starts a mock cluster, creates the topics, prints `mock ready bootstrap=HOST:PORT[,...]` and
 *       serves until stdin closes (unless --ignore-stdin) or SIGTERM/SIGINT.
 *   mock_cluster startup [--runs N]
 *       Embedded start-to-ready, the peer of examples/startup.rs: in one process, N times, time
 *       rd_kafka_mock_cluster_new() and the first ApiVersions round trip on a fresh TCP connection.
 *       Prints one `startup-embedded ...` line of key=value figures in microseconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rdkafka.h"
#include "rdkafka_mock.h"

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
        (void)sig;
        stop_requested = 1;
}

static int64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int write_all(int fd, const unsigned char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

static int read_all(int fd, unsigned char *buf, size_t len) {
        while (len > 0) {
                ssize_t n = read(fd, buf, len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* Connects to the first address of a bootstrap list and does one ApiVersions v0 round trip.
 * Returns the response's error code (0 = ok), or -1 on a transport failure. */
static int api_versions_round_trip(const char *bootstrap) {
        char host[256];
        const char *colon;
        const char *comma = strchr(bootstrap, ',');
        size_t len        = comma ? (size_t)(comma - bootstrap) : strlen(bootstrap);
        struct addrinfo hints = {0}, *res = NULL;
        int fd, one = 1, rc = -1;
        static const unsigned char request[] = {
            0, 0, 0, 15,  /* size */
            0, 18, 0, 0,  /* ApiVersions v0 */
            0, 0, 0, 42,  /* correlation id */
            0, 5, 'b', 'e', 'n', 'c', 'h'};
        unsigned char header[10];
        unsigned char *body;
        uint32_t size;

        if (len >= sizeof(host))
                return -1;
        memcpy(host, bootstrap, len);
        host[len] = '\0';
        colon     = strrchr(host, ':');
        if (!colon)
                return -1;
        host[colon - host] = '\0';
        hints.ai_family    = AF_UNSPEC;
        hints.ai_socktype  = SOCK_STREAM;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
                return -1;
        fd = socket(res->ai_family, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                if (write_all(fd, request, sizeof(request)) == 0 &&
                    read_all(fd, header, sizeof(header)) == 0) {
                        size = ((uint32_t)header[0] << 24) | ((uint32_t)header[1] << 16) |
                               ((uint32_t)header[2] << 8) | header[3];
                        if (size >= 6 && size < (1u << 20) && header[7] == 42) {
                                rc   = (header[8] << 8) | header[9];
                                body = malloc(size - 6);
                                if (!body || read_all(fd, body, size - 6) != 0)
                                        rc = -1;
                                free(body);
                        }
                }
        }
        if (fd >= 0)
                close(fd);
        freeaddrinfo(res);
        return rc;
}

static rd_kafka_t *new_handle(void) {
        char errstr[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_t *rk;
        rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "mock_cluster: rd_kafka_new: %s\n", errstr);
                exit(1);
        }
        return rk;
}

static int serve(int argc, char **argv) {
        int brokers = 1, ignore_stdin = 0, i;
        rd_kafka_t *rk;
        rd_kafka_mock_cluster_t *mcluster;
        struct sigaction sa = {0};
        sigset_t unblocked;
        char buf[256];

        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "--brokers") && i + 1 < argc)
                        brokers = atoi(argv[++i]);
                else if (!strcmp(argv[i], "--topic") && i + 1 < argc)
                        i++; /* created below, once the cluster exists */
                else if (!strcmp(argv[i], "--ignore-stdin"))
                        ignore_stdin = 1;
                else {
                        fprintf(stderr, "mock_cluster serve: unknown argument %s\n", argv[i]);
                        return 2;
                }
        }

        sa.sa_handler = on_signal; /* no SA_RESTART: the blocking read below must return */
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        rk       = new_handle();
        mcluster = rd_kafka_mock_cluster_new(rk, brokers);
        if (!mcluster) {
                fprintf(stderr, "mock_cluster: rd_kafka_mock_cluster_new failed\n");
                return 1;
        }
        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "--topic")) {
                        char name[256];
                        const char *spec  = argv[++i];
                        const char *colon = strrchr(spec, ':');
                        size_t len        = colon ? (size_t)(colon - spec) : strlen(spec);
                        int partitions    = colon ? atoi(colon + 1) : 1;
                        rd_kafka_resp_err_t err;
                        if (len >= sizeof(name) || partitions < 1) {
                                fprintf(stderr, "mock_cluster: bad --topic %s\n", spec);
                                return 2;
                        }
                        memcpy(name, spec, len);
                        name[len] = '\0';
                        err = rd_kafka_mock_topic_create(mcluster, name, partitions, 1);
                        if (err) {
                                fprintf(stderr, "mock_cluster: create %s: %s\n", name,
                                        rd_kafka_err2str(err));
                                return 1;
                        }
                }
        }

        printf("mock ready bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mcluster));
        fflush(stdout);

        if (ignore_stdin) {
                sigset_t stop_signals;
                sigemptyset(&stop_signals);
                sigaddset(&stop_signals, SIGTERM);
                sigaddset(&stop_signals, SIGINT);
                sigprocmask(SIG_BLOCK, &stop_signals, &unblocked);
                sigdelset(&unblocked, SIGTERM);
                sigdelset(&unblocked, SIGINT);
        }

        while (!stop_requested) {
                ssize_t n;
                if (ignore_stdin) {
                        /* Signals are blocked except inside sigsuspend, so none is lost
                         * between the check above and the wait. */
                        sigsuspend(&unblocked);
                        continue;
                }
                n = read(STDIN_FILENO, buf, sizeof(buf));
                if (n == 0 || (n < 0 && errno != EINTR))
                        break;
        }
        rd_kafka_mock_cluster_destroy(mcluster);
        rd_kafka_destroy(rk);
        return 0;
}

static int compare_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static int64_t percentile(const int64_t *sorted, int n, double p) {
        int rank = (int)((p / 100.0) * n + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return sorted[rank - 1];
}

static int startup(int argc, char **argv) {
        int runs = 200, i;
        int64_t t0, *new_ns, *ready_ns, first_ready_ns = 0, handle_ns;
        rd_kafka_t *rk;

        for (i = 0; i < argc; i++) {
                if (!strcmp(argv[i], "--runs") && i + 1 < argc)
                        runs = atoi(argv[++i]);
                else {
                        fprintf(stderr, "mock_cluster startup: unknown argument %s\n", argv[i]);
                        return 2;
                }
        }
        if (runs < 1)
                runs = 1;
        new_ns   = calloc((size_t)runs, sizeof(*new_ns));
        ready_ns = calloc((size_t)runs, sizeof(*ready_ns));

        t0        = now_ns();
        rk        = new_handle(); /* the mock cluster needs a host client instance */
        handle_ns = now_ns() - t0;

        for (i = 0; i < runs; i++) {
                rd_kafka_mock_cluster_t *mcluster;
                int err;
                t0       = now_ns();
                mcluster = rd_kafka_mock_cluster_new(rk, 1);
                if (!mcluster) {
                        fprintf(stderr, "mock_cluster: rd_kafka_mock_cluster_new failed\n");
                        return 1;
                }
                new_ns[i] = now_ns() - t0;
                err       = api_versions_round_trip(rd_kafka_mock_cluster_bootstraps(mcluster));
                ready_ns[i] = now_ns() - t0;
                if (err != 0) {
                        fprintf(stderr, "mock_cluster: ApiVersions round trip failed (%d)\n", err);
                        return 1;
                }
                if (i == 0)
                        first_ready_ns = ready_ns[0];
                rd_kafka_mock_cluster_destroy(mcluster);
        }
        rd_kafka_destroy(rk);

        qsort(new_ns, (size_t)runs, sizeof(*new_ns), compare_i64);
        qsort(ready_ns, (size_t)runs, sizeof(*ready_ns), compare_i64);
        printf("startup-embedded name=mock runs=%d host_handle_us=%.1f first_ready_us=%.1f "
               "start_median_us=%.1f start_p99_us=%.1f ready_median_us=%.1f ready_p99_us=%.1f "
               "ready_max_us=%.1f\n",
               runs, handle_ns / 1e3, first_ready_ns / 1e3, percentile(new_ns, runs, 50) / 1e3,
               percentile(new_ns, runs, 99) / 1e3, percentile(ready_ns, runs, 50) / 1e3,
               percentile(ready_ns, runs, 99) / 1e3, ready_ns[runs - 1] / 1e3);
        free(new_ns);
        free(ready_ns);
        return 0;
}

int main(int argc, char **argv) {
        if (argc >= 2 && !strcmp(argv[1], "serve"))
                return serve(argc - 2, argv + 2);
        if (argc >= 2 && !strcmp(argv[1], "startup"))
                return startup(argc - 2, argv + 2);
        fprintf(stderr,
                "usage: %s serve [--brokers N] [--topic NAME:PARTITIONS]... [--ignore-stdin]\n"
                "       %s startup [--runs N]\n",
                argv[0], argv[0]);
        return 2;
}
