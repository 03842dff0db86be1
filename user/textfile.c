#include "textfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Readable by node_exporter, which usually runs as another user. */
#define TEXTFILE_MODE 0644
#define TEMP_ATTEMPTS 16

static uint64_t random_u64(void)
{
	uint64_t v;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t)sizeof(v))
		return v;
	struct timespec ts; /* no entropy yet (early boot): still unique enough */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() << 32;
}

uint64_t (*textfile_random)(void) = random_u64;

static size_t temp_prefix(const struct textfile *tf, char *buf, size_t len)
{
	return (size_t)snprintf(buf, len, ".%s.tmp.", tf->name);
}

/*
 * A new temporary file, created exclusively: O_EXCL never opens an existing
 * file or follows a symlink someone planted under that name; try another name.
 */
static int temp_create(struct textfile *tf, char *path, size_t len)
{
	for (int i = 0; i < TEMP_ATTEMPTS; i++) {
		size_t n = temp_prefix(tf, path, len);
		snprintf(path + n, len - n, "%012" PRIx64, (uint64_t)(textfile_random() & 0xffffffffffffULL));
		int fd = openat(tf->dirfd, path,
				O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, TEXTFILE_MODE);
		if (fd >= 0 || errno != EEXIST)
			return fd;
	}
	errno = EEXIST;
	return -1;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int textfile_write(struct textfile *tf, const void *data, size_t len)
{
	char tmp[128];
	int fd = temp_create(tf, tmp, sizeof(tmp));
	if (fd < 0)
		return -errno;
	/* fchmod: the umask must not hide the file from node_exporter. */
	if (fchmod(fd, TEXTFILE_MODE) || write_all(fd, data, len) || fsync(fd))
		goto fail;
	if (close(fd)) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	/* rename replaces a symlink at the final name itself, never its target. */
	if (renameat(tf->dirfd, tmp, tf->dirfd, tf->name))
		goto fail;
	return 0;
fail:;
	int err = errno;
	if (fd >= 0)
		close(fd);
	unlinkat(tf->dirfd, tmp, 0);
	return -err;
}

/* Temporary files a killed lotrace left behind (regular files only). */
static void remove_stale_temps(struct textfile *tf)
{
	char prefix[96];
	size_t plen = temp_prefix(tf, prefix, sizeof(prefix));
	int fd = openat(tf->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		struct stat st;
		if (strncmp(e->d_name, prefix, plen) ||
		    fstatat(tf->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
			continue;
		unlinkat(tf->dirfd, e->d_name, 0);
	}
	closedir(d);
}

int textfile_open(struct textfile *tf, const char *dir, const char *name, char *why,
		  size_t whylen)
{
	tf->dirfd = -1;
	snprintf(tf->name, sizeof(tf->name), "%s", name);
	tf->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (tf->dirfd < 0) {
		int err = errno;
		struct stat st;
		if (err == ELOOP || (err == ENOTDIR && !lstat(dir, &st) && S_ISLNK(st.st_mode)))
			snprintf(why, whylen, "%s is a symlink; give the directory it points to", dir);
		else if (err == ENOTDIR)
			snprintf(why, whylen, "%s is not a directory", dir);
		else
			snprintf(why, whylen, "%s: %s", dir, strerror(err));
		return -1;
	}
	remove_stale_temps(tf);
	/* Prove now that files can be created here, rather than fail an hour later. */
	char tmp[128];
	int fd = temp_create(tf, tmp, sizeof(tmp));
	if (fd < 0) {
		snprintf(why, whylen, "%s is not writable: %s", dir, strerror(errno));
		close(tf->dirfd);
		tf->dirfd = -1;
		return -1;
	}
	close(fd);
	unlinkat(tf->dirfd, tmp, 0);
	return 0;
}

int textfile_remove(struct textfile *tf)
{
	return unlinkat(tf->dirfd, tf->name, 0) ? -errno : 0;
}

void textfile_close(struct textfile *tf)
{
	if (tf->dirfd >= 0)
		close(tf->dirfd);
	tf->dirfd = -1;
}
