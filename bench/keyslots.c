/* bench/keyslots.c - how many keyslots does a workload need?
 *
 * Drives one emulated engine (crypto/engine.h) and its crypto profile's
 * keyslot manager (crypto/profile.h) the way the block layer does: each
 * request passes the engine's gate, gets a keyslot for its key, has the
 * engine encrypt --bytes of data with it (nothing with --bytes 0: keyslot
 * management alone), puts the slot and leaves the gate.  Keys are
 * AES-256-XTS; the data unit size is 4096 bytes when --bytes is a multiple
 * of 4096, else 512.  The engine charges --program-us per keyslot program.
 *
 *   bench/keyslots [--slots S] [--keys K] [--threads T] [--requests N]
 *                  [--pattern round-robin|uniform|zipf] [--zipf-s X]
 *                  [--program-us P] [--bytes B] [--seed N] [--json]
 *
 *   bench/keyslots --core-latency [--json]
 *
 * --requests is per thread: the run makes T * N requests.  Key choice per
 * request: round-robin (thread t's i-th request uses key (t + i) mod K),
 * uniform, or zipf (key k with probability proportional to 1/(k+1)^X).
 *
 * It prints throughput, the time per request and per get+put, the hit
 * rate, programs and waits with the wait percentiles the profile's
 * histogram recorded (human table, or one JSON object with --json).  Time
 * per request is wall time x T / requests.  With --bytes 0 a request is
 * the gate and the get+put, so that is also the get+put time; with data,
 * get+put is timed in one request of SAMPLE_EVERY, less the cost of the
 * clock.  The counts come from the profile and are exact: with K <= S each
 * key is programmed once, whatever T; with S = 1, K = 2 round-robin on one
 * thread every request programs.  Exit status: 0, 1 on a failure, 2 on a
 * usage error.
 *
 * --core-latency measures, instead of keyslots, what bounds keyslot
 * thrash on more than one CPU: the time a cache line written on one CPU
 * takes to reach another, one way (half the round trip of two threads
 * pinned to two CPUs handing a flag back and forth; the median of
 * CORE_LATENCY_RUNS runs).  Misses program under the profile lock held
 * for writing, as upstream, so with two threads thrashing every miss waits
 * for the lock and the slots' state to come over from the other CPU.
 */
#include <config.h>

#include <errno.h>
#include <sched.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypt-ctx.h"
#include "engine.h"
#include "error.h"
#include "histogram.h"
#include "key.h"
#include "profile.h"
#include "secmem.h"

#define MAX_THREADS 1024
#define MAX_KEYS 65536
#define MAX_BYTES (16u << 20)
#define SAMPLE_EVERY 16         /* get+put timed in one request of 16 */
#define CORE_LATENCY_RUNS 7
#define CORE_LATENCY_TRIPS 100000 /* round trips per run */

enum pattern {
  PATTERN_ROUND_ROBIN,
  PATTERN_UNIFORM,
  PATTERN_ZIPF,
};

static const char *const pattern_names[] = {
  [PATTERN_ROUND_ROBIN] = "round-robin",
  [PATTERN_UNIFORM] = "uniform",
  [PATTERN_ZIPF] = "zipf",
};

/* The options. */
static unsigned int num_slots = 8;
static unsigned int num_keys = 16;
static unsigned int num_threads = 1;
static uint64_t requests = 1000000;     /* per thread */
static enum pattern pattern = PATTERN_ROUND_ROBIN;
static double zipf_s = 1.0;
static bool zipf_s_set;
static unsigned int program_us;
static unsigned int bytes;
static uint64_t seed = 1;
static bool json;
static bool core_latency;

/* The run. */
static struct ic_engine *engine;
static struct ic_crypto_profile *profile;
static struct ic_crypto_key **keys;
static double *zipf_cdf;                /* num_keys entries, last 1.0 */
static unsigned int data_unit_size;
static pthread_barrier_t start_barrier;

struct worker {
  pthread_t thread;
  unsigned int id;
  uint64_t rng;
  uint64_t sampled;             /* requests whose get+put was timed */
  uint64_t sampled_ns;          /* their get+put time, clock included */
  int err;                      /* the first failure, or 0 */
};

/* Two back-to-back clock reads, to subtract from a timed get+put. */
static uint64_t clock_pair_ns;

static void __attribute__ ((noreturn, format (printf, 1, 2)))
usage_error (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "keyslots: ");
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, "\nTry 'keyslots --help'.\n");
  exit (2);
}

static void
usage (void)
{
  printf ("usage: keyslots [OPTION]...\n"
          "How many keyslots does a workload need?  Runs requests through "
          "one emulated\ninline-encryption engine and reports keyslot "
          "hits, programs and waits.\n\n"
          "  --slots S        keyslots of the engine, 1..%u (default 8)\n"
          "  --keys K         distinct keys, 1..%u (default 16)\n"
          "  --threads T      threads making requests, 1..%u (default 1)\n"
          "  --requests N     requests per thread (default 1000000)\n"
          "  --pattern P      key of each request: round-robin, uniform or "
          "zipf\n"
          "                   (default round-robin)\n"
          "  --zipf-s X       zipf exponent, >= 0 (default 1.0)\n"
          "  --program-us P   cost of programming a keyslot (default 0)\n"
          "  --bytes B        bytes each request encrypts, a multiple of "
          "512 up to %u;\n"
          "                   0: keyslot get+put only (default 0)\n"
          "  --seed N         seed of the key choice (default 1)\n"
          "  --core-latency   measure the one-way latency between two "
          "CPUs instead\n"
          "  --json           one JSON object instead of a table\n"
          "  --help           this text\n",
          IC_ENGINE_MAX_SLOTS, MAX_KEYS, MAX_THREADS, MAX_BYTES);
  exit (0);
}

/* Parse an unsigned number in [min, max] for option @opt, or exit 2. */
static uint64_t
parse_uint (const char *opt, const char *arg, uint64_t min, uint64_t max)
{
  unsigned long long v;
  char *end;

  errno = 0;
  if (arg[0] == '-' || arg[0] == '\0')
    usage_error ("--%s: '%s' is not a non-negative number", opt, arg);
  v = strtoull (arg, &end, 10);
  if (errno || *end != '\0')
    usage_error ("--%s: '%s' is not a non-negative number", opt, arg);
  if (v < min || v > max)
    usage_error ("--%s: %llu is out of range: %" PRIu64 " to %" PRIu64, opt,
                 v, min, max);
  return v;
}

static double
parse_double (const char *opt, const char *arg)
{
  double v;
  char *end;

  errno = 0;
  v = strtod (arg, &end);
  if (errno || end == arg || *end != '\0' || !isfinite (v) || v < 0)
    usage_error ("--%s: '%s' is not a number >= 0", opt, arg);
  return v;
}

static void
parse_args (int argc, char **argv)
{
  enum {
    OPT_SLOTS = 256, OPT_KEYS, OPT_THREADS, OPT_REQUESTS, OPT_PATTERN,
    OPT_ZIPF_S, OPT_PROGRAM_US, OPT_BYTES, OPT_SEED, OPT_JSON, OPT_HELP,
    OPT_CORE_LATENCY,
  };
  static const struct option opts[] = {
    { "slots", required_argument, NULL, OPT_SLOTS },
    { "keys", required_argument, NULL, OPT_KEYS },
    { "threads", required_argument, NULL, OPT_THREADS },
    { "requests", required_argument, NULL, OPT_REQUESTS },
    { "pattern", required_argument, NULL, OPT_PATTERN },
    { "zipf-s", required_argument, NULL, OPT_ZIPF_S },
    { "program-us", required_argument, NULL, OPT_PROGRAM_US },
    { "bytes", required_argument, NULL, OPT_BYTES },
    { "seed", required_argument, NULL, OPT_SEED },
    { "json", no_argument, NULL, OPT_JSON },
    { "core-latency", no_argument, NULL, OPT_CORE_LATENCY },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
  };
  unsigned int keyslot_opts = 0;
  unsigned int i;
  int c;

  opterr = 0;
  while ((c = getopt_long (argc, argv, ":", opts, NULL)) != -1) {
    if (c >= OPT_SLOTS && c <= OPT_SEED)
      keyslot_opts++;
    switch (c) {
    case OPT_SLOTS:
      num_slots = parse_uint ("slots", optarg, 1, IC_ENGINE_MAX_SLOTS);
      break;
    case OPT_KEYS:
      num_keys = parse_uint ("keys", optarg, 1, MAX_KEYS);
      break;
    case OPT_THREADS:
      num_threads = parse_uint ("threads", optarg, 1, MAX_THREADS);
      break;
    case OPT_REQUESTS:
      requests = parse_uint ("requests", optarg, 1, UINT64_MAX / MAX_THREADS);
      break;
    case OPT_PATTERN:
      for (i = 0; i < sizeof pattern_names / sizeof pattern_names[0]; i++)
        if (strcmp (optarg, pattern_names[i]) == 0)
          break;
      if (i == sizeof pattern_names / sizeof pattern_names[0])
        usage_error ("--pattern: '%s' is not round-robin, uniform or zipf",
                     optarg);
      pattern = i;
      break;
    case OPT_ZIPF_S:
      zipf_s = parse_double ("zipf-s", optarg);
      zipf_s_set = true;
      break;
    case OPT_PROGRAM_US:
      program_us = parse_uint ("program-us", optarg, 0, 10000000);
      break;
    case OPT_BYTES:
      bytes = parse_uint ("bytes", optarg, 0, MAX_BYTES);
      if (bytes % IC_CRYPTO_MIN_DATA_UNIT_SIZE)
        usage_error ("--bytes: %u is not a multiple of %u", bytes,
                     IC_CRYPTO_MIN_DATA_UNIT_SIZE);
      break;
    case OPT_SEED:
      seed = parse_uint ("seed", optarg, 0, UINT64_MAX);
      break;
    case OPT_JSON:
      json = true;
      break;
    case OPT_CORE_LATENCY:
      core_latency = true;
      break;
    case OPT_HELP:
      usage ();
      break;
    case ':':
      usage_error ("%s needs an argument", argv[optind - 1]);
    default:
      usage_error ("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    usage_error ("unexpected argument '%s'", argv[optind]);
  if (zipf_s_set && pattern != PATTERN_ZIPF)
    usage_error ("--zipf-s needs --pattern zipf");
  if (core_latency && keyslot_opts)
    usage_error ("--core-latency takes no option but --json");
}

/* xorshift64*, one per thread. */
static uint64_t
rng_next (uint64_t *state)
{
  uint64_t x = *state;

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* The key of request @i of worker @w. */
static unsigned int
choose_key (struct worker *w, uint64_t i)
{
  unsigned int lo;
  unsigned int hi;
  double u;

  switch (pattern) {
  case PATTERN_ROUND_ROBIN:
    return (w->id + i) % num_keys;
  case PATTERN_UNIFORM:
    return ((rng_next (&w->rng) >> 32) * num_keys) >> 32;
  case PATTERN_ZIPF:
    /* The first key whose cumulative probability exceeds u. */
    u = (rng_next (&w->rng) >> 11) * (1.0 / 9007199254740992.0);
    lo = 0;
    hi = num_keys - 1;
    while (lo < hi) {
      unsigned int mid = lo + (hi - lo) / 2;

      if (zipf_cdf[mid] > u)
        hi = mid;
      else
        lo = mid + 1;
    }
    return lo;
  }
  abort ();
}

static void *
worker_main (void *arg)
{
  struct worker *w = arg;
  uint8_t *src = NULL;
  uint8_t *dst = NULL;
  struct ic_crypt_ctx ctx;
  uint64_t i;

  if (bytes) {
    src = calloc (1, bytes);
    dst = malloc (bytes);
    if (!src || !dst) {
      w->err = -ENOMEM;
      pthread_barrier_wait (&start_barrier);
      goto out;
    }
    memset (src, 0x5a, bytes);
  }
  pthread_barrier_wait (&start_barrier);

  for (i = 0; i < requests; i++) {
    struct ic_crypto_keyslot *slot;
    bool timed = bytes && i % SAMPLE_EVERY == 0;
    uint64_t t0 = 0;
    uint64_t t1 = 0;
    int r;

    ctx.key = keys[choose_key (w, i)];
    ic_engine_enter (engine);
    if (timed)
      t0 = ic_now_ns ();
    r = ic_crypto_get_keyslot (profile, ctx.key, &slot);
    if (timed)
      t1 = ic_now_ns ();
    if (r < 0) {
      ic_engine_exit (engine);
      fprintf (stderr, "keyslots: get keyslot: %s\n", ic_last_error ());
      w->err = r;
      break;
    }
    if (bytes) {
      ic_crypt_dun_set_u64 (ctx.dun, i);
      r = ic_engine_encrypt (engine, slot, &ctx, dst, src, bytes);
      if (r < 0) {
        ic_crypto_put_keyslot (slot);
        ic_engine_exit (engine);
        fprintf (stderr, "keyslots: encrypt: %s\n", ic_last_error ());
        w->err = r;
        break;
      }
    }
    if (timed) {
      uint64_t t2 = ic_now_ns ();

      ic_crypto_put_keyslot (slot);
      w->sampled_ns += (t1 - t0) + (ic_now_ns () - t2);
      w->sampled++;
    }
    else
      ic_crypto_put_keyslot (slot);
    ic_engine_exit (engine);
  }
out:
  free (src);
  free (dst);
  return NULL;
}

static int
setup (void)
{
  struct ic_engine_config cfg;
  uint8_t raw[64];
  uint64_t rng = seed ^ 0x6b657973ull;
  double sum = 0;
  unsigned int k;
  unsigned int j;
  uint64_t t;

  if (ic_crypto_init () < 0) {
    fprintf (stderr, "keyslots: %s\n", ic_last_error ());
    return -1;
  }
  data_unit_size = bytes && bytes % 4096 == 0 ? 4096 : 512;

  ic_engine_config_default (&cfg, "bench");
  cfg.num_slots = num_slots;
  cfg.program_us = program_us;
  engine = ic_engine_new (&cfg);
  if (!engine) {
    fprintf (stderr, "keyslots: %s\n", ic_last_error ());
    return -1;
  }
  profile = ic_engine_profile (engine);

  keys = calloc (num_keys, sizeof keys[0]);
  if (!keys)
    goto out_nomem;
  for (k = 0; k < num_keys; k++) {
    char name[32];

    for (j = 0; j < sizeof raw; j++)
      raw[j] = rng_next (&rng) >> 56;
    snprintf (name, sizeof name, "k%u", k);
    keys[k] = ic_crypto_key_new (name, raw, sizeof raw,
                                 IC_CRYPTO_KEY_TYPE_RAW,
                                 IC_ENCRYPTION_MODE_AES_256_XTS, 8,
                                 data_unit_size);
    if (!keys[k]) {
      fprintf (stderr, "keyslots: %s\n", ic_last_error ());
      return -1;
    }
  }
  ic_memzero_explicit (raw, sizeof raw);

  if (pattern == PATTERN_ZIPF) {
    zipf_cdf = calloc (num_keys, sizeof zipf_cdf[0]);
    if (!zipf_cdf)
      goto out_nomem;
    for (k = 0; k < num_keys; k++) {
      sum += 1.0 / pow (k + 1, zipf_s);
      zipf_cdf[k] = sum;
    }
    for (k = 0; k < num_keys; k++)
      zipf_cdf[k] /= sum;
    zipf_cdf[num_keys - 1] = 1.0;
  }

  /* The cost of the clock itself, taken from timed get+puts. */
  t = ic_now_ns ();
  for (j = 0; j < 1000; j++)
    ic_now_ns ();
  clock_pair_ns = 2 * (ic_now_ns () - t) / 1000;
  return 0;

out_nomem:
  fprintf (stderr, "keyslots: out of memory\n");
  return -1;
}

static void
teardown (void)
{
  unsigned int k;

  ic_engine_free (engine);
  for (k = 0; keys && k < num_keys; k++)
    ic_crypto_key_free (keys[k]);
  free (keys);
  free (zipf_cdf);
}

/* --core-latency: a flag alone on its cache line, and the CPUs of the
 * two threads that hand it back and forth.
 */
static struct {
  char pad_before[64];
  unsigned int turn;            /* atomic: 0 the pinger's, 1 the ponger's */
  char pad_after[64 - sizeof (unsigned int)];
} flag;

static int
pin_to (int cpu)
{
  cpu_set_t set;

  CPU_ZERO (&set);
  CPU_SET (cpu, &set);
  return pthread_setaffinity_np (pthread_self (), sizeof set, &set);
}

static void *
ponger_main (void *arg)
{
  unsigned int n;

  if (pin_to (*(int *) arg) != 0)
    return (void *) 1;
  for (n = 0; n < CORE_LATENCY_RUNS * CORE_LATENCY_TRIPS; n++) {
    while (__atomic_load_n (&flag.turn, __ATOMIC_ACQUIRE) != 1)
      ;
    __atomic_store_n (&flag.turn, 0, __ATOMIC_RELEASE);
  }
  return NULL;
}

static int
compare_double (const void *a, const void *b)
{
  double x = *(const double *) a;
  double y = *(const double *) b;

  return (x > y) - (x < y);
}

static int
run_core_latency (void)
{
  double runs[CORE_LATENCY_RUNS];
  int cpus[2] = { -1, -1 };
  cpu_set_t allowed;
  pthread_t ponger;
  void *ret;
  int cpu;
  int n = 0;
  int r;

  if (sched_getaffinity (0, sizeof allowed, &allowed) != 0) {
    perror ("keyslots: sched_getaffinity");
    return 1;
  }
  for (cpu = 0; cpu < CPU_SETSIZE && n < 2; cpu++)
    if (CPU_ISSET (cpu, &allowed))
      cpus[n++] = cpu;
  if (n < 2) {
    fprintf (stderr, "keyslots: --core-latency needs two CPUs, this "
             "process may run on %d\n", n);
    return 1;
  }
  if ((r = pin_to (cpus[0])) != 0 ||
      (r = pthread_create (&ponger, NULL, ponger_main, &cpus[1])) != 0) {
    fprintf (stderr, "keyslots: cannot pin or start a thread: %s\n",
             strerror (r));
    return 1;
  }
  for (n = 0; n < CORE_LATENCY_RUNS; n++) {
    uint64_t start = ic_now_ns ();
    unsigned int i;

    for (i = 0; i < CORE_LATENCY_TRIPS; i++) {
      __atomic_store_n (&flag.turn, 1, __ATOMIC_RELEASE);
      while (__atomic_load_n (&flag.turn, __ATOMIC_ACQUIRE) != 0)
        ;
    }
    runs[n] = (double) (ic_now_ns () - start) / CORE_LATENCY_TRIPS / 2;
  }
  pthread_join (ponger, &ret);
  if (ret) {
    fprintf (stderr, "keyslots: cannot pin a thread to CPU %d\n", cpus[1]);
    return 1;
  }
  qsort (runs, CORE_LATENCY_RUNS, sizeof runs[0], compare_double);
  if (json)
    printf ("{\"core_latency_ns\": %.1f, \"min_ns\": %.1f, "
            "\"max_ns\": %.1f, \"cpus\": [%d, %d], \"runs\": %d, "
            "\"round_trips_per_run\": %d}\n",
            runs[CORE_LATENCY_RUNS / 2], runs[0], runs[CORE_LATENCY_RUNS - 1],
            cpus[0], cpus[1], CORE_LATENCY_RUNS, CORE_LATENCY_TRIPS);
  else
    printf ("core-to-core latency, CPU %d <-> %d: %.1f ns one way (median "
            "of %d runs of %d round trips; min %.1f, max %.1f)\n", cpus[0],
            cpus[1], runs[CORE_LATENCY_RUNS / 2], CORE_LATENCY_RUNS,
            CORE_LATENCY_TRIPS, runs[0], runs[CORE_LATENCY_RUNS - 1]);
  return 0;
}

int
main (int argc, char **argv)
{
  struct worker *workers;
  struct ic_engine_stats st;
  uint64_t total = 0;
  uint64_t sampled = 0;
  uint64_t sampled_ns = 0;
  uint64_t start;
  uint64_t elapsed;
  double ns_per_request;
  double ns_per_get_put;
  double hit_rate;
  unsigned int t;
  int err = 0;

  parse_args (argc, argv);
  if (core_latency)
    return run_core_latency ();
  if (setup () < 0)
    return 1;
  workers = calloc (num_threads, sizeof workers[0]);
  if (!workers) {
    fprintf (stderr, "keyslots: out of memory\n");
    return 1;
  }
  pthread_barrier_init (&start_barrier, NULL, num_threads + 1);
  ic_engine_read_stats (engine, &st, true);
  for (t = 0; t < num_threads; t++) {
    workers[t].id = t;
    workers[t].rng = (seed + 1) * 0x9e3779b97f4a7c15ull + t;
    if (pthread_create (&workers[t].thread, NULL, worker_main,
                        &workers[t]) != 0) {
      fprintf (stderr, "keyslots: cannot create thread %u\n", t);
      return 1;
    }
  }
  pthread_barrier_wait (&start_barrier);
  start = ic_now_ns ();
  for (t = 0; t < num_threads; t++) {
    pthread_join (workers[t].thread, NULL);
    if (workers[t].err && !err)
      err = workers[t].err;
    sampled += workers[t].sampled;
    sampled_ns += workers[t].sampled_ns;
  }
  elapsed = ic_now_ns () - start;
  pthread_barrier_destroy (&start_barrier);
  if (err) {
    fprintf (stderr, "keyslots: failed: %s\n", ic_errno_name (-err));
    return 1;
  }
  ic_engine_read_stats (engine, &st, false);

  total = requests * num_threads;
  ns_per_request = (double) elapsed * num_threads / total;
  if (sampled == 0)
    ns_per_get_put = ns_per_request;
  else {
    ns_per_get_put = (double) sampled_ns / sampled - clock_pair_ns;
    if (ns_per_get_put < 0)
      ns_per_get_put = 0;
  }
  hit_rate = (double) st.slots.hits / (st.slots.hits + st.slots.misses);

  if (json)
    printf ("{\"slots\": %u, \"keys\": %u, \"threads\": %u, "
            "\"requests\": %" PRIu64 ", \"requests_per_thread\": %" PRIu64
            ", \"pattern\": \"%s\", \"zipf_s\": %g, \"program_us\": %u, "
            "\"bytes\": %u, \"data_unit_size\": %u, \"seconds\": %.6f, "
            "\"requests_per_s\": %.1f, \"ns_per_request\": %.1f, "
            "\"ns_per_get_put\": %.1f, \"hits\": %" PRIu64 ", "
            "\"misses\": %" PRIu64 ", \"hit_rate\": %.6f, "
            "\"programs\": %" PRIu64 ", \"program_failures\": %" PRIu64
            ", \"evictions\": %" PRIu64 ", \"waits\": %" PRIu64 ", "
            "\"wait_p50_us\": %.3f, \"wait_p99_us\": %.3f, "
            "\"wait_max_us\": %.3f, \"key_mismatches\": %" PRIu64 "}\n",
            num_slots, num_keys, num_threads, total, requests,
            pattern_names[pattern], pattern == PATTERN_ZIPF ? zipf_s : 0,
            program_us, bytes, data_unit_size, elapsed / 1e9,
            total / (elapsed / 1e9), ns_per_request, ns_per_get_put,
            st.slots.hits, st.slots.misses, hit_rate, st.slots.programs,
            st.slots.program_failures, st.slots.evictions, st.slots.waits,
            ic_histogram_percentile (&st.slots.wait, 50) / 1e3,
            ic_histogram_percentile (&st.slots.wait, 99) / 1e3,
            st.slots.wait.max_ns / 1e3, st.key_mismatches);
  else {
    printf ("keyslots: %u slot(s), %u key(s), %u thread(s) x %" PRIu64
            " requests, %s", num_slots, num_keys, num_threads, requests,
            pattern_names[pattern]);
    if (pattern == PATTERN_ZIPF)
      printf (" (s=%g)", zipf_s);
    printf (", program %u us, %u bytes/request\n", program_us, bytes);
    printf ("  %-16s %14.0f requests/s (%" PRIu64 " in %.3f s)\n",
            "throughput", total / (elapsed / 1e9), total, elapsed / 1e9);
    printf ("  %-16s %14.1f ns (per thread)\n", "per request",
            ns_per_request);
    printf ("  %-16s %14.1f ns%s\n", "per get+put", ns_per_get_put,
            sampled ? " (sampled)" : " (the whole request)");
    printf ("  %-16s %13.2f %% (%" PRIu64 " hits, %" PRIu64 " misses)\n",
            "hit rate", 100 * hit_rate, st.slots.hits, st.slots.misses);
    printf ("  %-16s %14" PRIu64 " (%" PRIu64 " failed)\n", "programs",
            st.slots.programs, st.slots.program_failures);
    printf ("  %-16s %14" PRIu64 " (p50 %.1f us, p99 %.1f us, max %.1f "
            "us)\n", "waits", st.slots.waits,
            ic_histogram_percentile (&st.slots.wait, 50) / 1e3,
            ic_histogram_percentile (&st.slots.wait, 99) / 1e3,
            st.slots.wait.max_ns / 1e3);
  }

  free (workers);
  teardown ();
  return st.key_mismatches ? 1 : 0;
}
