/* Vendored from the echod team's shared tools (shared/tools/echoload.c) so that the
 * benchmark stands on its own; keep the two in step. echod's copy adds the conn mode. */
/* echoload: a load generator and checker for TCP echo servers.
 *
 * Build: cc -O2 -Wall -o echoload echoload.c
 *
 * Modes (every echoed byte is verified against what was sent):
 *   pingpong  -c CONNS -s SIZE -d SECS   each connection sends SIZE bytes, waits for all of
 *                                        them back, repeats; reports req/s and latency.
 *   stream    -c CONNS -C CHUNK -d SECS  each connection writes CHUNK-byte pieces without
 *                                        waiting while reading the echo; after SECS it
 *                                        half-closes and drains until EOF (10 s at most).
 *   hold      -c CONNS -d SECS           opens CONNS connections, holds them SECS, then
 *                                        echoes 16 bytes on each.
 *   slowread  -n BYTES -d SECS           one connection writes up to BYTES and never
 *                                        reads; reports what the server took in.
 *   conn      -c CONNS -s SIZE -d SECS   short connections, CONNS at a time: each
 *                                        connects, sends SIZE bytes, half-closes, reads
 *                                        the echo to EOF, closes, and the next starts;
 *                                        reports connections/s and connection times.
 * Common: -H HOST (127.0.0.1)  -p PORT (10000)
 *
 * Output: a short summary, then one line of JSON with every figure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PATSZ (1 << 20)
static unsigned char PAT[PATSZ];

static const char *host = "127.0.0.1";
static int port = 10000, conns = 1, size = 64, chunk = 65536;
static double secs = 5;
static long long nbytes = 1LL << 30;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void fill_pattern(void) {
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < PATSZ; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        PAT[i] = (unsigned char)x;
    }
}

/* the byte at stream offset off of connection k */

static int connect_nb(void) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); exit(2); }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) { close(fd); return -1; }
    return fd;
}

static void raise_nofile(int want) {
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_cur < (rlim_t)want) {
        r.rlim_cur = r.rlim_max < (rlim_t)want ? r.rlim_max : (rlim_t)want;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

typedef struct {
    int fd, k, connected, done;
    uint64_t sent, recvd; /* stream offsets */
    uint64_t goal;        /* pingpong: offset at which the current request is complete */
    double t0;            /* pingpong: when the current request started */
} conn_t;

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int ep;
static unsigned char *buf;
static long long errors, mismatches;
static int open_conns;

static void drop(conn_t *x, int err) {
    if (err) errors++;
    close(x->fd);
    x->done = 1;
    open_conns--;
}

static void want(conn_t *x, int out) {
    struct epoll_event e = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = x};
    epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &e);
}

/* write what the connection owes: up to goal (pingpong) or a 4 MiB window ahead of the echo (stream) */
static void pump(conn_t *x, int stream) {
    uint64_t lim = stream ? x->recvd + (4u << 20) : x->goal;
    while (x->sent < lim) {
        size_t pos = (x->sent + (uint64_t)x->k * 7919) % PATSZ;
        size_t n = lim - x->sent;
        if (n > (size_t)chunk) n = chunk;
        if (n > PATSZ - pos) n = PATSZ - pos; /* send straight from the pattern, no copy */
        ssize_t w = send(x->fd, PAT + pos, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno != EAGAIN) drop(x, 1);
            else want(x, 1);
            return;
        }
        x->sent += w;
    }
    want(x, 0);
}

/* do the r bytes just received at offset off match what connection k sent there? */
static int matches(int k, uint64_t off, const unsigned char *b, size_t r) {
    while (r > 0) {
        size_t pos = (off + (uint64_t)k * 7919) % PATSZ, n = PATSZ - pos < r ? PATSZ - pos : r;
        if (memcmp(b, PAT + pos, n)) return 0;
        b += n; off += n; r -= n;
    }
    return 1;
}

static int mode_traffic(int stream) {
    raise_nofile(conns + 64);
    fill_pattern();
    if (!stream) chunk = size;
    ep = epoll_create1(0);
    conn_t *c = calloc(conns, sizeof *c);
    buf = malloc(1 << 18);
    size_t lcap = 1 << 20, ln = 0;
    uint32_t *lat = malloc(lcap * sizeof *lat);
    long long reqs = 0;
    open_conns = conns;
    for (int i = 0; i < conns; i++) {
        c[i].k = i;
        c[i].fd = connect_nb();
        if (c[i].fd < 0) { errors++; c[i].done = 1; open_conns--; continue; }
        struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = &c[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &e);
    }
    double start = now(), end = start + secs, drain_end = 0, stopped = 0;
    int closing = 0;
    struct epoll_event ev[512];
    while (open_conns > 0) {
        double t = now();
        if (!closing && t >= end) {
            closing = 1;
            stopped = t;
            drain_end = t + 10;
            if (!stream) break;
            for (int i = 0; i < conns; i++) {
                if (c[i].done) continue;
                shutdown(c[i].fd, SHUT_WR);
                want(&c[i], 0);
            }
        }
        if (closing && t >= drain_end) break;
        int n = epoll_wait(ep, ev, 512, 50);
        for (int j = 0; j < n; j++) {
            conn_t *x = ev[j].data.ptr;
            if (x->done) continue;
            if (ev[j].events & EPOLLERR) { drop(x, 1); continue; }
            if ((ev[j].events & EPOLLOUT) && !closing) {
                if (!x->connected) {
                    x->connected = 1;
                    if (!stream) { x->goal = size; x->t0 = now(); }
                }
                pump(x, stream);
                if (x->done) continue;
            }
            if (!(ev[j].events & (EPOLLIN | EPOLLHUP))) continue;
            for (int rounds = 0; rounds < 8; rounds++) {
                ssize_t r = recv(x->fd, buf, 1 << 18, 0);
                if (r == 0) { drop(x, 0); break; }
                if (r < 0) { if (errno != EAGAIN) drop(x, 1); break; }
                if (!matches(x->k, x->recvd, buf, r)) mismatches++;
                x->recvd += r;
                if (stream) {
                    if (!closing) pump(x, 1);
                    if (x->done) break;
                } else if (x->recvd == x->goal) {
                    double t1 = now();
                    reqs++;
                    if (ln == lcap) { lcap *= 2; lat = realloc(lat, lcap * sizeof *lat); }
                    lat[ln++] = (uint32_t)((t1 - x->t0) * 1e6);
                    if (!closing) { x->goal += size; x->t0 = t1; pump(x, 0); }
                    if (x->done) break;
                } else if (x->recvd > x->goal) { mismatches++; drop(x, 1); break; }
            }
        }
    }
    double el = (stopped ? stopped : now()) - start;
    uint64_t sent = 0, recvd = 0;
    int complete = 0;
    for (int i = 0; i < conns; i++) {
        sent += c[i].sent; recvd += c[i].recvd;
        if (c[i].done && c[i].sent == c[i].recvd) complete++;
        if (!c[i].done) close(c[i].fd);
    }
    if (stream) {
        double mbs = recvd / el / 1e6;
        printf("stream: %d conns, chunk %d: %.1f MB/s echoed, sent %llu, received %llu, mismatches %lld, errors %lld, complete %d/%d\n",
               conns, chunk, mbs, (unsigned long long)sent, (unsigned long long)recvd, mismatches, errors, complete, conns);
        printf("{\"mode\":\"stream\",\"conns\":%d,\"chunk\":%d,\"secs\":%.2f,\"mb_per_s\":%.2f,\"sent\":%llu,\"received\":%llu,"
               "\"mismatches\":%lld,\"errors\":%lld,\"complete\":%d,\"all_back\":%s}\n",
               conns, chunk, el, mbs, (unsigned long long)sent, (unsigned long long)recvd, mismatches, errors, complete,
               (sent == recvd && mismatches == 0 && complete == conns) ? "true" : "false");
        return (mismatches || errors || complete != conns) ? 1 : 0;
    }
    qsort(lat, ln, sizeof *lat, cmp_u32);
    uint32_t p50 = ln ? lat[ln / 2] : 0, p99 = ln ? lat[ln * 99 / 100] : 0, p999 = ln ? lat[ln * 999 / 1000] : 0;
    double rps = reqs / el;
    printf("pingpong: %d conns, %d B: %.0f req/s, %.1f MB/s, p50 %u us, p99 %u us, p99.9 %u us, mismatches %lld, errors %lld\n",
           conns, size, rps, rps * size / 1e6, p50, p99, p999, mismatches, errors);
    printf("{\"mode\":\"pingpong\",\"conns\":%d,\"size\":%d,\"secs\":%.2f,\"req_per_s\":%.1f,\"mb_per_s\":%.2f,"
           "\"p50_us\":%u,\"p99_us\":%u,\"p999_us\":%u,\"requests\":%lld,\"mismatches\":%lld,\"errors\":%lld}\n",
           conns, size, el, rps, rps * size / 1e6, p50, p99, p999, reqs, mismatches, errors);
    return (mismatches || errors) ? 1 : 0;
}

/* conn mode: start connection number x->k on slot x */
static void conn_start(conn_t *x, long long k) {
    memset(x, 0, sizeof *x);
    x->k = (int)(k % 1000003);
    x->t0 = now();
    x->fd = connect_nb();
    if (x->fd < 0) { x->done = 1; return; }
    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = x};
    epoll_ctl(ep, EPOLL_CTL_ADD, x->fd, &e);
}

/* conn mode: end a connection. The client half-closed first, so its port waits in
 * TIME_WAIT for a minute: a run of tens of thousands of connections needs the kernel to
 * reuse those ports for new connections (net.ipv4.tcp_tw_reuse, 2 by default: on
 * loopback); without it connect fails and the run counts errors. */
static void conn_end(conn_t *x) {
    close(x->fd);
}

static int mode_conn(void) {
    raise_nofile(conns + 64);
    fill_pattern();
    ep = epoll_create1(0);
    conn_t *c = calloc(conns, sizeof *c);
    buf = malloc(1 << 18);
    size_t lcap = 1 << 20, ln = 0;
    uint32_t *lat = malloc(lcap * sizeof *lat);
    long long started = 0, completed = 0;
    for (int i = 0; i < conns; i++) { conn_start(&c[i], started++); if (c[i].done) errors++; }
    double start = now(), end = start + secs;
    struct epoll_event ev[512];
    while (now() < end) {
        int n = epoll_wait(ep, ev, 512, 50);
        for (int j = 0; j < n; j++) {
            conn_t *x = ev[j].data.ptr;
            int over = 0, failed = 0;
            if (ev[j].events & EPOLLERR) { over = failed = 1; }
            else {
                if ((ev[j].events & EPOLLOUT) && x->sent < (uint64_t)size) {
                    size_t pos = (x->sent + (uint64_t)x->k * 7919) % PATSZ;
                    size_t left = size - x->sent;
                    ssize_t w = send(x->fd, PAT + pos, left < PATSZ - pos ? left : PATSZ - pos, MSG_NOSIGNAL);
                    if (w < 0 && errno != EAGAIN) over = failed = 1;
                    if (w > 0) x->sent += w;
                    if (x->sent == (uint64_t)size) { shutdown(x->fd, SHUT_WR); want(x, 0); }
                }
                while (!over && (ev[j].events & (EPOLLIN | EPOLLHUP))) {
                    ssize_t r = recv(x->fd, buf, 1 << 18, 0);
                    if (r < 0) { if (errno != EAGAIN) over = failed = 1; break; }
                    if (r == 0) {
                        over = 1;
                        if (x->recvd != (uint64_t)size) failed = 1;
                        break;
                    }
                    if (x->recvd + r > (uint64_t)size || !matches(x->k, x->recvd, buf, r)) {
                        mismatches++; over = failed = 1; break;
                    }
                    x->recvd += r;
                }
            }
            if (!over) continue;
            if (failed) errors++;
            else {
                completed++;
                if (ln == lcap) { lcap *= 2; lat = realloc(lat, lcap * sizeof *lat); }
                lat[ln++] = (uint32_t)((now() - x->t0) * 1e6);
            }
            conn_end(x);
            conn_start(x, started++);
            if (x->done) errors++;
        }
    }
    double el = now() - start;
    for (int i = 0; i < conns; i++) if (!c[i].done) conn_end(&c[i]);
    qsort(lat, ln, sizeof *lat, cmp_u32);
    uint32_t p50 = ln ? lat[ln / 2] : 0, p99 = ln ? lat[ln * 99 / 100] : 0;
    double cps = completed / el;
    printf("conn: %d at a time, %d B each: %.0f connections/s, p50 %u us, p99 %u us, mismatches %lld, errors %lld\n",
           conns, size, cps, p50, p99, mismatches, errors);
    printf("{\"mode\":\"conn\",\"conns\":%d,\"size\":%d,\"secs\":%.2f,\"conn_per_s\":%.1f,\"p50_us\":%u,\"p99_us\":%u,"
           "\"completed\":%lld,\"mismatches\":%lld,\"errors\":%lld}\n",
           conns, size, el, cps, p50, p99, completed, mismatches, errors);
    return (mismatches || errors) ? 1 : 0;
}

static int mode_hold(void) {
    raise_nofile(conns + 64);
    int *fd = calloc(conns, sizeof *fd);
    int ok = 0, failed = 0, verified = 0;
    double t0 = now();
    int ep = epoll_create1(0);
    for (int i = 0; i < conns; i++) {
        fd[i] = connect_nb();
        if (fd[i] < 0) {
            if (errno == EMFILE || errno == ENFILE) fprintf(stderr, "out of file descriptors at %d (raise ulimit -n)\n", i);
            failed++; continue;
        }
        struct epoll_event e = {.events = EPOLLOUT, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &e);
    }
    struct epoll_event ev[512];
    int pending = conns - failed;
    double dl = now() + 30;
    while (pending > 0 && now() < dl) {
        int n = epoll_wait(ep, ev, 512, 100);
        for (int j = 0; j < n; j++) {
            int i = ev[j].data.u32, err = 0;
            socklen_t l = sizeof err;
            getsockopt(fd[i], SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) { failed++; close(fd[i]); fd[i] = -1; } else ok++;
            epoll_ctl(ep, EPOLL_CTL_DEL, fd[i] >= 0 ? fd[i] : 0, NULL);
            pending--;
        }
    }
    double tc = now() - t0;
    usleep((useconds_t)(secs * 1e6));
    /* send 16 bytes on each live connection, then collect */
    char msg[16], got[16];
    for (int i = 0; i < conns; i++) {
        if (fd[i] < 0) continue;
        snprintf(msg, sizeof msg, "%015d", i);
        if (send(fd[i], msg, 16, MSG_NOSIGNAL) != 16) { failed++; close(fd[i]); fd[i] = -1; continue; }
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &e);
    }
    int *have = calloc(conns, sizeof *have);
    char (*acc)[16] = calloc(conns, 16);
    int waiting = 0;
    for (int i = 0; i < conns; i++) waiting += fd[i] >= 0;
    dl = now() + 15;
    while (waiting > 0 && now() < dl) {
        int n = epoll_wait(ep, ev, 512, 100);
        for (int j = 0; j < n; j++) {
            int i = ev[j].data.u32;
            ssize_t r = recv(fd[i], acc[i] + have[i], 16 - have[i], 0);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; failed++; epoll_ctl(ep, EPOLL_CTL_DEL, fd[i], NULL); waiting--; continue; }
            have[i] += r;
            if (have[i] == 16) {
                snprintf(got, sizeof got, "%015d", i);
                if (memcmp(acc[i], got, 16) == 0) verified++; else failed++;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd[i], NULL);
                waiting--;
            }
        }
    }
    for (int i = 0; i < conns; i++) if (fd[i] >= 0) close(fd[i]);
    printf("hold: %d asked, %d connected in %.2f s, %d verified after %.0f s, %d failed\n", conns, ok, tc, verified, secs, failed);
    printf("{\"mode\":\"hold\",\"conns\":%d,\"connected\":%d,\"connect_s\":%.3f,\"verified\":%d,\"failed\":%d}\n",
           conns, ok, tc, verified, failed);
    return verified == conns ? 0 : 1;
}

static int mode_slowread(void) {
    fill_pattern();
    int fd = connect_nb();
    if (fd < 0) { perror("connect"); return 2; }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    long long sent = 0;
    double t0 = now(), end = t0 + secs, last_progress = t0;
    while (sent < nbytes && now() < end) {
        if (poll(&p, 1, 100) <= 0) {
            if (now() - last_progress > 3) break; /* the server stopped taking data */
            continue;
        }
        size_t want = nbytes - sent < (1 << 16) ? (size_t)(nbytes - sent) : (1 << 16);
        ssize_t w = send(fd, PAT + (sent % (PATSZ - (1 << 16))), want, MSG_NOSIGNAL);
        if (w < 0) { if (errno == EAGAIN) continue; break; }
        sent += w;
        last_progress = now();
    }
    double el = now() - t0;
    printf("slowread: the server took %lld bytes in %.1f s without being read\n", sent, el);
    printf("{\"mode\":\"slowread\",\"accepted\":%lld,\"secs\":%.2f}\n", sent, el);
    close(fd);
    return 0;
}

static void usage(void) {
    fputs("usage: echoload pingpong|stream|hold|slowread|conn [-H host] [-p port] [-c conns] [-s size]\n"
          "                [-C chunk] [-d secs] [-n bytes]\n", stderr);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) usage();
    const char *mode = argv[1];
    int o;
    optind = 2;
    while ((o = getopt(argc, argv, "H:p:c:s:C:d:n:")) != -1) {
        switch (o) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 's': size = atoi(optarg); break;
        case 'C': chunk = atoi(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'n': nbytes = atoll(optarg); break;
        default: usage();
        }
    }
    if (conns < 1 || size < 1 || chunk < 1 || secs <= 0) usage();
    if (!strcmp(mode, "pingpong")) return mode_traffic(0);
    if (!strcmp(mode, "stream")) return mode_traffic(1);
    if (!strcmp(mode, "hold")) return mode_hold();
    if (!strcmp(mode, "slowread")) return mode_slowread();
    if (!strcmp(mode, "conn")) return mode_conn();
    usage();
}
