/*
 * A do-nothing milter: the ceiling of "Postfix + a milter" for benchmarks/milter.py.
 *
 * It negotiates what it is told on the command line (the action and protocol flags and the
 * macro lists mailroute's adapter asks for, intersected with the MTA's offer as mailroute
 * does), answers "accept" to end-of-message and to DATA when it is owed (as mailroute does
 * for a policy without filters), "continue" to every other command the negotiation left
 * owed, and does nothing else: no parsing beyond the packet header, one poll()
 * loop, one process, one write per reply. What is left of the cost of a milter is then the
 * MTA's milter client and the kernel.
 *
 *   null_milter [-a TEXT] SOCKET_PATH ACTIONS PROTOCOL [STAGE NAMES]...
 *
 * With -a, end-of-message is answered with the body it was shown followed by TEXT (one
 * body replacement run in packets of at most 65,535 bytes, then accept): the ceiling of
 * "Postfix + a milter that changes the body", such as a disclaimer, with no work done
 * beyond copying bytes.
 *
 * ACTIONS and PROTOCOL are numbers (0x... allowed); each STAGE NAMES pair is one macro list
 * of the negotiation reply. SIGUSR1 prints the packets counted so far by command byte (in)
 * and reply byte (out) to stdout; SIGTERM ends the process.
 *
 * Benchmark helper only: no part of mailroute.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>

#define MAX_CONN 1024
#define MAX_PACKET (1 << 20)

struct conn {
    int fd;
    unsigned char *buf;
    size_t len, cap;
    unsigned char *body;  /* the body chunks shown so far (-a only) */
    size_t body_len, body_cap;
};

static volatile sig_atomic_t stop, report;
static unsigned long in_count[256], out_count[256];
static uint32_t want_actions, want_protocol, protocol;
static unsigned char macros[4096];
static size_t macros_len;
static const char *append_text;  /* -a: the text added to every body */

static void on_signal(int sig) { if (sig == SIGUSR1) report = 1; else stop = 1; }

static void put32(unsigned char *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }

/* The reply-exempting flag of each command byte (0: always answered). */
static uint32_t no_reply_flag(unsigned char cmd) {
    switch (cmd) {
    case 'C': return 0x1000; case 'H': return 0x2000; case 'M': return 0x4000;
    case 'R': return 0x8000; case 'T': return 0x10000; case 'U': return 0x20000;
    case 'N': return 0x40000; case 'B': return 0x80000; case 'L': return 0x80;
    default: return 0;
    }
}

/* Keep a body chunk for the replacement; 0 when memory runs out. */
static int keep_body(struct conn *c, const unsigned char *data, size_t n) {
    if (c->body_cap - c->body_len < n) {
        size_t cap = c->body_cap ? c->body_cap : 65536;
        while (cap - c->body_len < n) cap *= 2;
        unsigned char *grown = realloc(c->body, cap);
        if (!grown) return 0;
        c->body = grown;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, n);
    c->body_len += n;
    return 1;
}

/* Write all of buf to the non-blocking fd, waiting while the socket is full; 0 on error. */
static int write_all(int fd, const unsigned char *buf, size_t len) {
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) return 0;
            struct pollfd out = {.fd = fd, .events = POLLOUT};
            if (poll(&out, 1, 30000) <= 0) return 0;
            continue;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 1;
}

/* Write the kept body plus append_text as replacement packets, then accept; 0 on error. */
static int replace_body(struct conn *c) {
    size_t text = strlen(append_text);
    if (!keep_body(c, (const unsigned char *)append_text, text)) return 0;
    size_t chunks = c->body_len / 65535 + 1;
    unsigned char *out = malloc(c->body_len + 5 * chunks + 5);
    if (!out) return 0;
    size_t olen = 0;
    for (size_t at = 0; at < c->body_len; at += 65535) {
        size_t n = c->body_len - at < 65535 ? c->body_len - at : 65535;
        put32(out + olen, (uint32_t)n + 1);
        out[olen + 4] = 'b';
        memcpy(out + olen + 5, c->body + at, n);
        olen += 5 + n;
        out_count['b']++;
    }
    put32(out + olen, 1);
    out[olen + 4] = 'a';
    olen += 5;
    out_count['a']++;
    c->body_len = 0;
    int ok = write_all(c->fd, out, olen);
    free(out);
    return ok;
}

/* Append the packets answering one command to out; returns 0 to close. */
static int answer(struct conn *c, const unsigned char *pkt, uint32_t len, unsigned char *out,
                  size_t *olen) {
    unsigned char cmd = pkt[0];
    unsigned char reply;
    in_count[cmd]++;
    if (append_text && (cmd == 'B' || cmd == 'E') && len > 1
        && !keep_body(c, pkt + 1, len - 1)) return 0;
    if (append_text && cmd == 'E') {
        if (*olen && !write_all(c->fd, out, *olen)) return 0;
        *olen = 0;
        return replace_body(c);
    }
    if (append_text && (cmd == 'A' || cmd == 'K')) c->body_len = 0;
    if (cmd == 'Q') return 0;
    if (cmd == 'D' || cmd == 'A' || cmd == 'K') return 1;
    if (cmd == 'O') {
        if (len < 13) return 0;
        uint32_t version = get32(pkt + 1), actions = get32(pkt + 5), offered = get32(pkt + 9);
        if (version > 6) version = 6;
        uint32_t mine = want_actions & actions;
        protocol = want_protocol & offered;
        size_t extra = (version >= 6 && (mine & 0x100)) ? macros_len : 0;
        if (!extra) mine &= ~0x100u;
        put32(out + *olen, 13 + extra);
        out[*olen + 4] = 'O';
        put32(out + *olen + 5, version);
        put32(out + *olen + 9, mine);
        put32(out + *olen + 13, protocol);
        memcpy(out + *olen + 17, macros, extra);
        *olen += 17 + extra;
        out_count['O']++;
        return 1;
    }
    if (cmd == 'E') reply = 'a';
    else if (protocol & no_reply_flag(cmd)) return 1;
    else if (cmd == 'T') reply = 'a';  /* owed only without filters: accepted there */
    else reply = 'c';
    put32(out + *olen, 1);
    out[*olen + 4] = reply;
    *olen += 5;
    out_count[reply]++;
    return 1;
}

static void print_counts(void) {
    printf("in");
    for (int i = 0; i < 256; i++) if (in_count[i]) printf(" %c=%lu", i, in_count[i]);
    printf(" | out");
    for (int i = 0; i < 256; i++) if (out_count[i]) printf(" %c=%lu", i, out_count[i]);
    printf("\n");
    fflush(stdout);
}

/* Read what is there, answer every complete packet with one write; 0 to close. */
static int serve(struct conn *c) {
    unsigned char out[8192];
    size_t olen = 0;
    for (;;) {
        if (c->cap - c->len < 65536) {
            c->cap = c->cap ? c->cap * 2 : 131072;
            if (c->cap > 4 * MAX_PACKET) return 0;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) return 0;
        }
        ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            return 0;
        }
        size_t room = c->cap - c->len;
        c->len += (size_t)n;
        if ((size_t)n < room) break;
    }
    size_t pos = 0;
    int open = 1;
    while (open && c->len - pos >= 4) {
        uint32_t len = get32(c->buf + pos);
        if (len == 0 || len > MAX_PACKET) return 0;
        if (c->len - pos - 4 < len) break;
        if (olen + 17 + macros_len > sizeof out) {
            if (write(c->fd, out, olen) != (ssize_t)olen) return 0;
            olen = 0;
        }
        open = answer(c, c->buf + pos + 4, len, out, &olen);
        pos += 4 + len;
    }
    memmove(c->buf, c->buf + pos, c->len - pos);
    c->len -= pos;
    if (olen && write(c->fd, out, olen) != (ssize_t)olen) return 0;
    return open;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "-a") == 0) {
        append_text = argv[2];
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    if (argc < 4 || argc % 2) {
        fprintf(stderr, "usage: %s [-a TEXT] SOCKET ACTIONS PROTOCOL [STAGE NAMES]...\n",
                argv[0]);
        return 2;
    }
    want_actions = (uint32_t)strtoul(argv[2], NULL, 0);
    want_protocol = (uint32_t)strtoul(argv[3], NULL, 0);
    for (int i = 4; i + 1 < argc; i += 2) {
        size_t n = strlen(argv[i + 1]) + 1;
        if (macros_len + 4 + n > sizeof macros) return 2;
        put32(macros + macros_len, (uint32_t)strtoul(argv[i], NULL, 0));
        memcpy(macros + macros_len + 4, argv[i + 1], n);
        macros_len += 4 + n;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    unlink(argv[1]);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 512)) {
        perror("listen");
        return 1;
    }
    chmod(argv[1], 0666);
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    static struct pollfd fds[MAX_CONN + 1];
    static struct conn conns[MAX_CONN + 1];
    nfds_t nfds = 1;
    fds[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
    while (!stop) {
        if (report) { report = 0; print_counts(); }
        int ready = poll(fds, nfds, 1000);
        if (ready < 0) continue;
        for (nfds_t i = 1; i < nfds; i++) {
            if (!fds[i].revents) continue;
            if (!serve(&conns[i])) {
                close(fds[i].fd);
                free(conns[i].buf);
                free(conns[i].body);
                fds[i] = fds[nfds - 1];
                conns[i] = conns[nfds - 1];
                nfds--;
                i--;
            }
        }
        if (fds[0].revents & POLLIN) {
            int fd;
            while (nfds <= MAX_CONN && (fd = accept(lfd, NULL, NULL)) >= 0) {
                fcntl(fd, F_SETFL, O_NONBLOCK);
                fds[nfds] = (struct pollfd){.fd = fd, .events = POLLIN};
                conns[nfds] = (struct conn){.fd = fd};
                nfds++;
            }
        }
    }
    print_counts();
    unlink(argv[1]);
    return 0;
}
