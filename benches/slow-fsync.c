/* benches/slow-fsync.c: an LD_PRELOAD shim that delays every fsync and fdatasync by
 * SLOW_FSYNC_US microseconds (5000 when unset), to measure the file backup on a disk
 * slower than the development VM's (about 0.1-1 ms per fdatasync there). Only rowstream
 * run fsyncs among the peers.sh readers; the servers started under it pay the delay too.
 *
 *   gcc -shared -fPIC -O2 -o target/slow-fsync.so benches/slow-fsync.c -ldl
 *   LD_PRELOAD=$PWD/target/slow-fsync.so BASE_BIN=... \
 *     READERS="mariadb:rowstream-run mariadb:base-run" benches/peers.sh
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static void delay(void) {
    const char *s = getenv("SLOW_FSYNC_US");
    usleep(s ? (useconds_t)atoi(s) : 5000);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    delay();
    return real(fd);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    delay();
    return real(fd);
}
