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

static size_t lock_name(const struct textfile *tf, char *buf, size_t len)
{
	return (size_t)snprintf(buf, len, ".%s.lock", tf->name);
}

/*
 * A write lock on ".NAME.lock": a second exporter on the same directory would
 * flip the file between two sets of counters and delete it when it stops.
 * fcntl locks (not flock) because F_GETLK names the holder's pid.  The lock
 * file is removed on close, so after locking check that the name still refers
 * to the file locked (a closing holder may have removed it meanwhile).
 * Returns the locked fd, or -1 with why set.
 */
static int lock_dir(struct textfile *tf, int dirfd, const char *dir, char *why, size_t whylen)
{
	char lname[96];
	lock_name(tf, lname, sizeof(lname));
	for (int attempt = 0; attempt < 8; attempt++) {
		int fd = openat(dirfd, lname, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			/* The first file lotrace creates there: the usual "not writable" line. */
			snprintf(why, whylen, "%s is not writable: %s (creating %s)", dir,
				 strerror(errno), lname);
			return -1;
		}
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if (fcntl(fd, F_SETLK, &fl)) {
			int err = errno;
			struct flock who = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
			if ((err == EAGAIN || err == EACCES) && !fcntl(fd, F_GETLK, &who) &&
			    who.l_type != F_UNLCK) {
				snprintf(why, whylen, "%s is in use by another lotrace export (pid %d holds %s/%s)",
					 dir, (int)who.l_pid, dir, lname);
				close(fd);
				return -1;
			}
			close(fd);
			if (err == EAGAIN || err == EACCES)
				continue; /* released meanwhile */
			snprintf(why, whylen, "%s: cannot lock %s: %s", dir, lname, strerror(err));
			return -1;
		}
		struct stat held, named;
		if (!fstat(fd, &held) && !fstatat(dirfd, lname, &named, AT_SYMLINK_NOFOLLOW) &&
		    held.st_dev == named.st_dev && held.st_ino == named.st_ino)
			return fd;
		close(fd);
	}
	snprintf(why, whylen, "%s: cannot lock %s: it keeps being replaced", dir, lname);
	return -1;
}

static void unlock_dir(struct textfile *tf)
{
	if (tf->lockfd < 0)
		return;
	char lname[96];
	lock_name(tf, lname, sizeof(lname));
	/* Ours while we hold the lock: remove it, then release. */
	if (tf->dirfd >= 0)
		unlinkat(tf->dirfd, lname, 0);
	close(tf->lockfd);
	tf->lockfd = -1;
}

/* Opens and locks dir into tf; -1 with why (2: locked by another exporter). */
static int open_dir(struct textfile *tf, const char *dir, char *why, size_t whylen)
{
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
	tf->lockfd = lock_dir(tf, tf->dirfd, dir, why, whylen);
	if (tf->lockfd < 0) {
		close(tf->dirfd);
		tf->dirfd = -1;
		return strstr(why, "in use by another") ? -2 : -1;
	}
	/* Only now: an unlocked directory's temporary files may be another writer's. */
	remove_stale_temps(tf);
	/* Prove now that files can be created here, rather than fail an hour later. */
	char tmp[128];
	int fd = temp_create(tf, tmp, sizeof(tmp));
	if (fd < 0) {
		snprintf(why, whylen, "%s is not writable: %s", dir, strerror(errno));
		unlock_dir(tf);
		close(tf->dirfd);
		tf->dirfd = -1;
		return -1;
	}
	close(fd);
	unlinkat(tf->dirfd, tmp, 0);
	return 0;
}

int textfile_open(struct textfile *tf, const char *dir, const char *name, char *why,
		  size_t whylen)
{
	tf->dirfd = -1;
	tf->lockfd = -1;
	snprintf(tf->name, sizeof(tf->name), "%s", name);
	snprintf(tf->dir, sizeof(tf->dir), "%s", dir);
	return open_dir(tf, dir, why, whylen) ? -1 : 0;
}

int textfile_follow(struct textfile *tf, char *why, size_t whylen)
{
	struct stat open_st, path_st;
	if (!fstat(tf->dirfd, &open_st) && open_st.st_nlink > 0 &&
	    !lstat(tf->dir, &path_st) && path_st.st_dev == open_st.st_dev &&
	    path_st.st_ino == open_st.st_ino)
		return 0;
	struct textfile n = *tf;
	int r = open_dir(&n, tf->dir, why, whylen);
	if (r)
		return r;
	/* The old directory is gone or no longer ours to write: let go of it. */
	unlinkat(tf->dirfd, tf->name, 0);
	unlock_dir(tf);
	close(tf->dirfd);
	tf->dirfd = n.dirfd;
	tf->lockfd = n.lockfd;
	return 1;
}

int textfile_remove(struct textfile *tf)
{
	return unlinkat(tf->dirfd, tf->name, 0) ? -errno : 0;
}

bool textfile_needs_dac_override(const struct textfile *tf)
{
	struct stat st;
	if (fstat(tf->dirfd, &st))
		return true;
	mode_t wx = st.st_uid == geteuid() ? S_IWUSR | S_IXUSR :
		    st.st_gid == getegid() ? S_IWGRP | S_IXGRP : S_IWOTH | S_IXOTH;
	return (st.st_mode & wx) != wx;
}

void textfile_close(struct textfile *tf)
{
	unlock_dir(tf);
	if (tf->dirfd >= 0)
		close(tf->dirfd);
	tf->dirfd = -1;
}
