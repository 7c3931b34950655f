/*
 * iscsi-perf-write: the write counterpart of libiscsi's iscsi-perf, which
 * only reads. It logs in to one LUN over one connection, keeps -m WRITE16
 * commands of -b blocks in flight with libiscsi's asynchronous API, for -t
 * seconds, and ends with iscsi-perf's summary line,
 *	iops average N (M MB/s)
 * (MB there are MiB, as in iscsi-perf), so that the benchmark reads both
 * the same way. The data written is a fixed pattern: this is for scratch
 * LUNs only.
 */

#include <sys/types.h>

#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define INITIATOR_NAME	"iqn.2026-11.org.example:iscsi-perf-write"
#define DEFAULT_DEPTH	1
#define DEFAULT_BLOCKS	8
#define DEFAULT_SECS	10
#define MAX_DEPTH	1024
#define MAX_BLOCKS	65536
#define MAX_SECS	3600
/* How long one poll may sleep, so that the end time is noticed. */
#define POLL_MS		100
#define FILL_BYTE	0xa5
#define NSEC_PER_SEC	1000000000LL

struct perf {
	struct iscsi_context	*iscsi;
	int			 lun;
	uint32_t		 blocksize;
	uint32_t		 blocks;	/* per command */
	uint64_t		 slots;		/* commands that fit the LUN */
	uint64_t		 next;		/* sequential slot */
	uint64_t		 rand;		/* xorshift64 state */
	int			 random;
	unsigned char		*buf;
	uint64_t		 done;
	int			 in_flight;
	int			 stopping;
	int			 failed;
};

static volatile sig_atomic_t interrupted;

static void	issue(struct perf *);

static void
usage(void)
{
	fprintf(stderr, "usage: iscsi-perf-write [-r] [-b blocks] [-m depth] "
	    "[-t secs] iscsi://host[:port]/target-iqn/lun\n");
	exit(1);
}

static void
onsig(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		err(1, "clock_gettime");
	return (int64_t)ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

static long long
number(const char *s, long long lo, long long hi, const char *what)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *s == '\0' || *end != '\0' || v < lo || v > hi)
		errx(1, "%s %s: not a number from %lld to %lld", what, s, lo, hi);
	return v;
}

static uint64_t
next_slot(struct perf *p)
{
	uint64_t x;

	if (!p->random)
		return p->next++ % p->slots;
	x = p->rand;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	p->rand = x;
	return x % p->slots;
}

static void
write_cb(struct iscsi_context *iscsi, int status, void *command_data,
    void *private_data)
{
	struct perf *p = private_data;
	struct scsi_task *task = command_data;

	p->in_flight--;
	if (status == SCSI_STATUS_GOOD)
		p->done++;
	else if (!p->failed) {
		warnx("WRITE16 failed (status %d): %s", status,
		    iscsi_get_error(iscsi));
		p->failed = 1;
	}
	scsi_free_scsi_task(task);
	if (!p->stopping && !p->failed)
		issue(p);
}

static void
issue(struct perf *p)
{
	uint64_t lba = next_slot(p) * p->blocks;

	if (iscsi_write16_task(p->iscsi, p->lun, lba, p->buf,
	    p->blocks * p->blocksize, p->blocksize, 0, 0, 0, 0, 0,
	    write_cb, p) == NULL) {
		warnx("WRITE16: %s", iscsi_get_error(p->iscsi));
		p->failed = 1;
		return;
	}
	p->in_flight++;
}

int
main(int argc, char *argv[])
{
	struct perf p;
	struct iscsi_url *url;
	struct scsi_task *task;
	struct scsi_readcapacity16 *rc;
	struct pollfd pfd;
	int64_t start, end, stopped;
	uint64_t done, mib;
	double secs;
	int ch, depth = DEFAULT_DEPTH, i, nsecs = DEFAULT_SECS;

	memset(&p, 0, sizeof(p));
	p.blocks = DEFAULT_BLOCKS;
	while ((ch = getopt(argc, argv, "b:m:rt:")) != -1) {
		switch (ch) {
		case 'b':
			p.blocks = number(optarg, 1, MAX_BLOCKS, "blocks");
			break;
		case 'm':
			depth = number(optarg, 1, MAX_DEPTH, "depth");
			break;
		case 'r':
			p.random = 1;
			break;
		case 't':
			nsecs = number(optarg, 1, MAX_SECS, "seconds");
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 1)
		usage();

	if ((p.iscsi = iscsi_create_context(INITIATOR_NAME)) == NULL)
		errx(1, "iscsi_create_context failed");
	if ((url = iscsi_parse_full_url(p.iscsi, argv[0])) == NULL)
		errx(1, "%s: %s", argv[0], iscsi_get_error(p.iscsi));
	if (iscsi_set_targetname(p.iscsi, url->target) != 0 ||
	    iscsi_set_session_type(p.iscsi, ISCSI_SESSION_NORMAL) != 0)
		errx(1, "%s", iscsi_get_error(p.iscsi));
	if (iscsi_full_connect_sync(p.iscsi, url->portal, url->lun) != 0)
		errx(1, "login to %s: %s", url->portal, iscsi_get_error(p.iscsi));
	p.lun = url->lun;
	printf("connected to %s\n", argv[0]);
	iscsi_destroy_url(url);

	if ((task = iscsi_readcapacity16_sync(p.iscsi, p.lun)) == NULL ||
	    task->status != SCSI_STATUS_GOOD)
		errx(1, "READ CAPACITY(16): %s", iscsi_get_error(p.iscsi));
	if ((rc = scsi_datain_unmarshall(task)) == NULL)
		errx(1, "READ CAPACITY(16): bad data");
	p.blocksize = rc->block_length;
	p.slots = (rc->returned_lba + 1) / p.blocks;
	scsi_free_scsi_task(task);
	if (p.blocksize == 0 || p.slots == 0)
		errx(1, "LUN %d holds no %u-block write", p.lun, p.blocks);

	if ((p.buf = malloc((size_t)p.blocks * p.blocksize)) == NULL)
		err(1, NULL);
	memset(p.buf, FILL_BYTE, (size_t)p.blocks * p.blocksize);
	p.rand = (uint64_t)now_ns() | 1;
	signal(SIGINT, onsig);
	signal(SIGTERM, onsig);

	start = now_ns();
	end = start + (int64_t)nsecs * NSEC_PER_SEC;
	stopped = end;
	done = 0;
	for (i = 0; i < depth && !p.failed; i++)
		issue(&p);
	while (!p.failed) {
		if (!p.stopping && (interrupted || now_ns() >= end)) {
			/* What completes while the queue drains is not counted. */
			p.stopping = 1;
			stopped = now_ns();
			done = p.done;
		}
		if (p.stopping && p.in_flight == 0)
			break;
		pfd.fd = iscsi_get_fd(p.iscsi);
		pfd.events = iscsi_which_events(p.iscsi);
		pfd.revents = 0;
		if (poll(&pfd, 1, POLL_MS) == -1) {
			if (errno == EINTR)
				continue;
			err(1, "poll");
		}
		if (iscsi_service(p.iscsi, pfd.revents) < 0)
			errx(1, "iscsi_service: %s", iscsi_get_error(p.iscsi));
	}
	if (p.failed)
		return 1;

	secs = (double)(stopped - start) / NSEC_PER_SEC;
	mib = (uint64_t)(done * p.blocks * p.blocksize / secs) >> 20;
	printf("iops average %" PRIu64 " (%" PRIu64 " MB/s)\n",
	    (uint64_t)(done / secs), mib);
	printf("finished.\n");
	iscsi_logout_sync(p.iscsi);
	iscsi_destroy_context(p.iscsi);
	free(p.buf);
	return 0;
}
