/* An open-loop HTTP/1.1 load generator: requests arrive as a Poisson process at a fixed rate, whatever
 * the server's pace, and each latency is measured from the moment its request was due, so a slow server
 * is charged for the requests that wait behind it (no coordinated omission, unlike a closed loop such
 * as wrk's). Built and run by bench/proxy_latency.py; no packaged tool does this (wrk2 is not packaged).
 *
 * usage: openloop PORT HOST RATE SECONDS CONNECTIONS
 * Keep-alive connections to 127.0.0.1:PORT; a due request goes to an idle connection, or waits in a FIFO
 * for the next one that frees. Responses must carry Content-Length. Prints one line:
 *   sent done late_ms_p50 p90 p99 p999 max errors
 * where requests still unanswered one second after the last was due count as errors (and as infinitely
 * late in the percentiles).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int busy;
    double due;      /* when the request in flight was due */
    char buf[65536];
    size_t len;
} conn_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static char request[512];
static size_t request_len;

static int send_request(conn_t *c, double due) {
    ssize_t n = write(c->fd, request, request_len);
    if (n != (ssize_t)request_len) return -1; /* a small request fits an empty socket buffer */
    c->busy = 1;
    c->due = due;
    return 0;
}

/* One complete response at the start of c->buf: its length, 0 if incomplete, -1 if unusable. */
static long response_length(conn_t *c) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return c->len >= sizeof(c->buf) ? -1 : 0;
    size_t head = end - c->buf + 4;
    long body = -1;
    for (char *p = c->buf; p < end; p++) {
        if ((p == c->buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtol(p + 15, NULL, 10);
            break;
        }
    }
    if (body < 0) return -1;
    return c->len >= head + body ? (long)(head + body) : 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s PORT HOST RATE SECONDS CONNECTIONS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int nconn = atoi(argv[5]);
    request_len = snprintf(request, sizeof(request), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", argv[2]);
    long total = (long)(rate * seconds) + 1;
    double *late = malloc(sizeof(double) * total * 2);
    double *waiting = malloc(sizeof(double) * total); /* due times of requests with no idle connection */
    long wait_head = 0, wait_tail = 0, sent = 0, done = 0, errors = 0;
    conn_t *conns = calloc(nconn, sizeof(conn_t));
    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    for (int i = 0; i < nconn; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) { perror("connect"); return 1; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    srand48(12345);
    double start = now() + 0.01, next = start, end_due = start + seconds;
    int idle_next = 0; /* round robin over idle connections */
    struct epoll_event events[256];
    for (;;) {
        double t = now();
        while (next <= t && next < end_due && sent + (wait_tail - wait_head) < total) {
            int chosen = -1;
            for (int k = 0; k < nconn; k++) {
                int i = (idle_next + k) % nconn;
                if (!conns[i].busy) { chosen = i; break; }
            }
            if (chosen >= 0 && wait_head == wait_tail) {
                idle_next = chosen + 1;
                if (send_request(&conns[chosen], next) < 0) errors++;
                else sent++;
            } else {
                waiting[wait_tail++] = next;
            }
            next += -log(1.0 - drand48()) / rate;
        }
        if (t > end_due + 1.0 || (next >= end_due && done + errors >= sent && wait_head == wait_tail)) break;
        double wake = next < end_due ? next : end_due + 1.0;
        double dt = wake - t;
        struct timespec timeout = {.tv_sec = (time_t)dt, .tv_nsec = (long)((dt - (time_t)dt) * 1e9)};
        if (dt < 0) timeout.tv_sec = timeout.tv_nsec = 0;
        int n = epoll_pwait2(ep, events, 256, &timeout, NULL);
        if (n < 0 && errno != EINTR) { perror("epoll"); return 1; }
        for (int e = 0; e < n; e++) {
            conn_t *c = &conns[events[e].data.u32];
            ssize_t got = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
            if (got <= 0) { fprintf(stderr, "connection closed\n"); return 1; }
            c->len += got;
            long len;
            while (c->busy && (len = response_length(c)) != 0) {
                if (len < 0) { fprintf(stderr, "unusable response\n"); return 1; }
                late[done++] = now() - c->due;
                memmove(c->buf, c->buf + len, c->len - len);
                c->len -= len;
                c->busy = 0;
                if (wait_head < wait_tail) {
                    if (send_request(c, waiting[wait_head++]) < 0) errors++;
                    else sent++;
                }
            }
        }
    }
    long unanswered = sent - done + (wait_tail - wait_head);
    errors += unanswered;
    long count = done + errors;
    for (long i = done; i < count; i++) late[i] = INFINITY;
    qsort(late, count, sizeof(double), cmp);
#define P(q) (count ? late[(long)((count - 1) * (q))] * 1e3 : 0.0)
    printf("%ld %ld %.3f %.3f %.3f %.3f %.3f %ld\n", sent + (wait_tail - wait_head), done, P(0.5), P(0.9),
           P(0.99), P(0.999), count ? late[count - 1] * 1e3 : 0.0, errors);
    return 0;
}
