/* cecho: a minimal C epoll echo server, the ceiling in echod's benchmark.
 *
 * Build: cc -O2 -Wall -o cecho cecho.c      Run: ./cecho PORT
 *
 * One thread, non-blocking sockets, level-triggered epoll. Each connection has
 * a 64 KiB buffer: read into it, write it back; while bytes are left unsent it
 * stops reading that connection (so it is bounded, like echod). EOF from the
 * client: flush what is left, then close.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ 65536

struct conn { int fd; int len, off; unsigned events; char buf[BUFSZ]; };

static int ep;

/* Change the epoll interest only when it changes: EPOLLOUT while bytes wait. */
static void set_events(struct conn *c) {
    unsigned want = c->len > c->off ? EPOLLOUT : EPOLLIN;
    if (want == c->events) return;
    struct epoll_event e = {.events = want, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
    c->events = want;
}

static void drop(struct conn *c) { close(c->fd); free(c); }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: cecho PORT\n"); return 2; }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (void *)&a, sizeof a) || listen(ls, 4096)) { perror("listen"); return 1; }
    ep = epoll_create1(0);
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &le);
    struct epoll_event ev[256];
    for (;;) {
        int n = epoll_wait(ep, ev, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = ev[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    nc->events = EPOLLIN;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            if (c->len == c->off) {          /* nothing pending: read */
                ssize_t r = read(c->fd, c->buf, BUFSZ);
                if (r < 0 && errno == EAGAIN) continue;
                if (r <= 0) { drop(c); continue; }  /* EOF with nothing pending: done */
                c->len = r; c->off = 0;
            }
            ssize_t w = write(c->fd, c->buf + c->off, c->len - c->off);
            if (w < 0 && errno != EAGAIN) { drop(c); continue; }
            if (w > 0) c->off += w;
            if (c->off == c->len) c->len = c->off = 0;
            set_events(c);
        }
    }
}
