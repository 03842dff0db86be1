/* Test helpers: run lotrace and lobench as real processes, read their JSON. */
#ifndef LOTRACE_TEST_RUN_H
#define LOTRACE_TEST_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <json-c/json.h>

struct lotrace_proc {
	pid_t pid;
	int out_fd; /* stdout */
	int err_fd; /* stderr */
	char err[8192];
};

/* Start `$LOTRACE stat --json ARGS...` and wait until it traces. false on failure. */
bool lotrace_start(struct lotrace_proc *p, const char *const *args);
/* The same inside network namespace netns (/run/netns/NAME; NULL: this one). */
bool lotrace_start_in(struct lotrace_proc *p, const char *netns, const char *const *args);

/*
 * Start `$LOTRACE command ARGS...` (no --json added) with its stdout written
 * to out_path, and wait until it traces.  out_fd is -1.
 */
bool lotrace_start_to_file(struct lotrace_proc *p, const char *command, const char *out_path,
			   const char *const *args);
/* SIGINT it and reap it: its exit status (-1 if it was not running); err has its stderr. */
int lotrace_stop_status(struct lotrace_proc *p);

/*
 * What a test owns, instead of global BPF state other tools change: the ids of
 * the BPF programs process pid holds (prog and link fds, from
 * /proc/PID/fdinfo), read while it runs.  Returns how many (at most max).
 */
int bpf_prog_ids_of(pid_t pid, unsigned *ids, int max);
/* Whether the kernel still has BPF program id (held by a fd, link or tc filter). */
bool bpf_prog_id_exists(unsigned id);
/* Waits up to timeout_s for every id to be freed; returns the first left, or 0. */
unsigned wait_prog_ids_gone(const unsigned *ids, int n, double timeout_s);
/* SIGINT it; returns its JSON (caller json_object_put) or NULL; *status gets the exit status. */
json_object *lotrace_stop(struct lotrace_proc *p, int *status);
/* SIGKILL it (no cleanup of its own) and reap it. */
void lotrace_kill(struct lotrace_proc *p);

/* Everything until EOF, NUL-terminated (caller frees); *len_out gets its length. */
char *read_fd_all(int fd, size_t *len_out);

/* Run a shell command, return its stdout parsed as JSON (NULL on failure). */
json_object *run_json(const char *cmd);
/* Run a shell command; returns its exit status (-1 if it could not run). */
int run_cmd(const char *cmd);
/* Run a shell command and capture stdout+stderr into buf. Returns exit status. */
int run_capture(const char *cmd, char *buf, size_t len);

/* lotrace JSON accessors: the processes row or NULL. */
json_object *find_process(json_object *doc, int pid, const char *transport, const char *direction);
json_object *find_pair(json_object *doc, int sender, int receiver, const char *transport);
int64_t jint(json_object *obj, const char *path); /* "a.b.c"; -1 if missing */
double jnum(json_object *obj, const char *path);  /* "a.b.c" as a number; NAN if missing */
/*
 * What lotrace said about its own accounting (untimed by cause, missed
 * program runs, lost events), for a failure message: a count that is off
 * then says whether lotrace knew.  Returns buf.
 */
const char *accounting_of(json_object *doc, char *buf, size_t len);

/*
 * Issue 11 (counter maps): max_entries of the BPF map named `name` that
 * process `owner` holds open; -1 if none.
 */
long owned_map_max_entries(pid_t owner, const char *name);
/*
 * Starts n processes of user `uid` (their own process group, returned) that
 * each send and receive one message of `size` bytes on every transport (10
 * proc_counts rows each), then sit idle.  Returns once all did, or -1.
 */
#define IDLE_FILLER_COMM "lt-idle-filler"
pid_t idle_fillers_start(int n, uid_t uid, size_t size);
void idle_fillers_stop(pid_t pgid);
/*
 * In this process: n ping-pongs with itself over a unix_dgram socketpair
 * (send one message of `size` bytes, receive it): every message timed.
 * 0, or -1.
 */
int self_dgram_traffic(int n, size_t size);
/* A child named comm that runs self_dgram_traffic(n, size), then exits (0: it worked). */
pid_t run_named(const char *comm, int n, size_t size);
/*
 * fork() into pid `want` (clone3 set_tid; root): 0 in the child, `want` in
 * the parent, -1 (errno EEXIST) if taken.  The child must use raw system
 * calls for credentials: glibc's setuid would wait for threads it lacks.
 */
pid_t fork_at_pid(pid_t want);
/*
 * Start, at pid `want` (free again after its first owner exited), a process
 * of user nobody named comm that runs self_dgram_traffic(n, size) and exits.
 * Retries while another process holds the pid.  Returns want, or -1 (errno).
 */
pid_t run_named_at_pid_as_nobody(pid_t want, const char *comm, int n, size_t size);

/* Seconds on CLOCK_MONOTONIC; sleep s seconds (through signals). */
double now_s(void);
void sleep_s(double s);

const char *lotrace_path(void);
const char *lobench_path(void);

#endif
