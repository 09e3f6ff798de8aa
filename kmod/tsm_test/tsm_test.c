// SPDX-License-Identifier: GPL-2.0-only
/*
 * tsm_test: a configfs-tsm report provider for testing the tsm core itself.
 *
 * Its report is byte-for-byte the layout of the emulator's tsm_test provider
 * (conformance/tsm_conformance/emulator/providers.py, class TsmTest), all little-endian:
 *
 *   0x00 "TSMT"            0x04 u32 layout (1)        0x08 u32 outblob length
 *   0x0C u32 report_new counter (provider-wide, first report is 1)
 *   0x10 u32 privlevel     0x14 u32 inblob_len        0x18 u32 service_manifest_version
 *   0x1C u32 flags (bit0: service_provider set)       0x20 service_guid[16] (guid_t bytes)
 *   0x30 reserved[16]      0x40 inblob[64]: the first inblob_len bytes, zero-padded
 *   0x80 service_provider[64], NUL-padded, at most 63 bytes
 *   0xC0 .. outblob_size - 1: byte i = (i * 31 + counter) & 0xff
 *
 * plant_bug=1 (testing the sanitizer findings only) overflows a heap buffer by one byte when the
 * committed inblob is 8 or more bytes ending in a byte >= 0xf0.
 * size_step=S adds (counter % 8) * S bytes of padding, so consecutive reports differ in length
 * (what the size-then-fill read race needs to show, docs/abi.md §8.14).
 * auxblob is "TSMA" + u32 counter, manifestblob "TSMM" + u32 counter (each switchable).  With the
 * measurement group below the auxblob goes on with every register, in table order (184 bytes):
 *
 *   0x00 "TSMA"            0x04 u32 counter (the outblob's 0x0C)
 *   0x08 mrconfig[48]      0x38 mrstatic[48]      0x68 rtmr0[48] (hw)      0x98 rtmr1[32] (hw)
 *
 * Measurement registers (tsm-mr, docs/abi-measurements.md), compiled only on 6.16+ with
 * CONFIG_TSM_MEASUREMENTS (Debian 7.x builds it in); elsewhere neither they nor their parameters
 * exist.  With measurements=1 (0444, the default) the module also registers a misc device
 * "tsm_test" carrying the group of tsm_mr_create_attribute_group(), so the files are
 * /sys/devices/virtual/misc/tsm_test/measurements/ (also under /sys/class/misc/tsm_test/):
 *
 *   mrconfig          48 bytes  READABLE|NOHASH    0444  fixed: "tsm_test mrconfig", zero-padded
 *   mrstatic:sha384   48 bytes  READABLE, SHA-384  0444  fixed: "tsm_test mrstatic", zero-padded
 *   rtmr0:sha384      48 bytes  READABLE|RTMR      0644  live, starts as 48 zero bytes
 *   rtmr1:sha256      32 bytes  READABLE|RTMR      0644  live, starts as 32 zero bytes
 *
 * Each live register has two copies, as on hardware: "hw", the register itself, and mr_value, the
 * cache the tsm-mr core reads.  write (exactly the register's size at offset 0, which the core
 * checks) sets hw = H(hw || data) with the register's own hash (crypto_shash "sha384"/"sha256",
 * allocated at load: the load fails without them).  refresh, which the core calls when a live
 * register is read after any write to the group (and on the first such read), copies hw into
 * mr_value for both live registers and adds one to the read-only parameter mr_refreshes (uint,
 * 0444).  The non-live registers never change.  The report's auxblob carries hw, so a report taken
 * after an extend shows it even before a sysfs read refreshed the cache.  One mutex covers write,
 * refresh and the report's copy: a report never sees half an extend.  The group is set up before
 * the report provider registers and torn down after it unregisters.  With measurements=0 there is
 * no misc device and the auxblob stays 8 bytes.
 * refuse_below_floor=1 makes report_new fail -EINVAL when the item's privlevel is below
 * privlevel_floor, as SNP firmware refuses a report whose VMPL is below the VMPL of the VMPCK
 * that asks (a fresh item's privlevel is 0: a client must write privlevel first).
 * Registration shims: 6.7-6.10 tsm_register(ops, priv, type), 6.11-6.15 tsm_register(ops, priv),
 * 6.16+ tsm_report_register(ops, priv) (in 6.19+ tsm_register means the PCI TSM core).
 */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/delay.h>
#include <linux/string.h>
#include <linux/version.h>
#include <linux/tsm.h>

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0) && IS_ENABLED(CONFIG_TSM_MEASUREMENTS)
#define TT_MR 1
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/tsm-mr.h>
#include <crypto/hash.h>
#include <crypto/sha2.h>
#else
#define TT_MR 0
#endif

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
#define TT_OPS tsm_report_ops
#define TT_INBLOB_MAX TSM_REPORT_INBLOB_MAX
#define TT_HAS_SERVICE 1
#define TT_HOOKS 1
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
#define TT_OPS tsm_ops
#define TT_INBLOB_MAX TSM_INBLOB_MAX
#define TT_HAS_SERVICE 1
#define TT_HOOKS 1
#else
#define TT_OPS tsm_ops
#define TT_INBLOB_MAX TSM_INBLOB_MAX
#define TT_HAS_SERVICE 0
#define TT_HOOKS 0
#endif

#define TT_LAYOUT_LEN 0xC0

static unsigned int privlevel_floor = 1;
module_param(privlevel_floor, uint, 0444);
MODULE_PARM_DESC(privlevel_floor, "privlevel_floor advertised to the core (0..3)");

static char *visibility = "all";
module_param(visibility, charp, 0444);
MODULE_PARM_DESC(visibility, "all | sev-like | tdx-like: which attributes items show");

static int fail_errno;
module_param(fail_errno, int, 0644);
MODULE_PARM_DESC(fail_errno, "when non-zero, report_new fails with -fail_errno");

static unsigned int delay_ms;
module_param(delay_ms, uint, 0644);
MODULE_PARM_DESC(delay_ms, "sleep in report_new (the core holds its global lock meanwhile)");

static unsigned int outblob_size = TT_LAYOUT_LEN;
module_param(outblob_size, uint, 0644);
MODULE_PARM_DESC(outblob_size, "outblob length, at least 192 (pattern-filled past the layout)");

static unsigned int size_step;
module_param(size_step, uint, 0644);
MODULE_PARM_DESC(size_step, "each report is (counter % 8) * size_step bytes longer than outblob_size: "
		 "sizes change between generations");

static bool auxblob = true;
module_param(auxblob, bool, 0644);
MODULE_PARM_DESC(auxblob, "produce an auxblob");

static bool refuse_below_floor;
module_param(refuse_below_floor, bool, 0444);
MODULE_PARM_DESC(refuse_below_floor, "report_new fails -EINVAL below privlevel_floor (firmware-like)");

static bool manifestblob = true;
module_param(manifestblob, bool, 0644);
MODULE_PARM_DESC(manifestblob, "produce a manifestblob (6.11+)");

static bool plant_bug;
module_param(plant_bug, bool, 0444);
MODULE_PARM_DESC(plant_bug, "TESTING ONLY: a deliberate one-byte heap overflow when the committed inblob "
		 "is 8+ bytes ending in a byte >= 0xf0 (what a sanitizer finding looks like; corrupts memory)");

static u32 calls;

static void put32(u8 *p, u32 v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static u8 *tag_blob(const char *magic, u32 n, size_t *len)
{
	u8 *b = kvzalloc(8, GFP_KERNEL);

	if (!b)
		return NULL;
	memcpy(b, magic, 4);
	put32(b + 4, n);
	*len = 8;
	return b;
}

#if TT_MR
static bool measurements = true;
module_param(measurements, bool, 0444);
MODULE_PARM_DESC(measurements, "register the measurement-register group "
		 "(/sys/devices/virtual/misc/tsm_test/measurements) and put the registers in the auxblob");

static unsigned int mr_refreshes;
module_param(mr_refreshes, uint, 0444);
MODULE_PARM_DESC(mr_refreshes, "how many times the tsm-mr core called refresh");

#define TT_MR_AUX_LEN (8 + 3 * SHA384_DIGEST_SIZE + SHA256_DIGEST_SIZE)

/* the kernel's cache (mr_value), what the core reads */
static u8 tt_mrconfig[SHA384_DIGEST_SIZE] = "tsm_test mrconfig";
static u8 tt_mrstatic[SHA384_DIGEST_SIZE] = "tsm_test mrstatic";
static u8 tt_rtmr0[SHA384_DIGEST_SIZE];
static u8 tt_rtmr1[SHA256_DIGEST_SIZE];
/* the "hardware" registers of the live ones: write extends these, refresh copies them out */
static u8 tt_hw_rtmr0[SHA384_DIGEST_SIZE];
static u8 tt_hw_rtmr1[SHA256_DIGEST_SIZE];
static DEFINE_MUTEX(tt_mr_lock);	/* hw, mr_value of the live registers, mr_refreshes */
static struct crypto_shash *tt_sha384, *tt_sha256;

#define TT_MR_VAL(v) .mr_value = (v)
static const struct tsm_measurement_register tt_mrs[] = {
	{ TT_MR_VAL(tt_mrconfig), TSM_MR_(mrconfig, SHA384) | TSM_MR_F_NOHASH },
	{ TT_MR_VAL(tt_mrstatic), TSM_MR_(mrstatic, SHA384) },
	{ TT_MR_VAL(tt_rtmr0), TSM_MR_(rtmr0, SHA384) | TSM_MR_F_RTMR },
	{ TT_MR_VAL(tt_rtmr1), TSM_MR_(rtmr1, SHA256) | TSM_MR_F_RTMR },
};
#undef TT_MR_VAL

/* what the report shows of each register, in table order: hw for the live ones */
static u8 *const tt_mr_hw[] = { tt_mrconfig, tt_mrstatic, tt_hw_rtmr0, tt_hw_rtmr1 };

static int tt_mr_write(const struct tsm_measurements *tm, const struct tsm_measurement_register *mr,
		       const u8 *data)
{
	size_t i = mr - tt_mrs;
	struct crypto_shash *tfm;
	u8 buf[2 * SHA384_DIGEST_SIZE], out[SHA384_DIGEST_SIZE];
	int rc;

	if (i >= ARRAY_SIZE(tt_mrs) || !(mr->mr_flags & TSM_MR_F_LIVE))
		return -EINVAL;	/* the core never asks: only live registers are writable */
	tfm = mr->mr_hash == HASH_ALGO_SHA384 ? tt_sha384 : tt_sha256;
	if (crypto_shash_digestsize(tfm) != mr->mr_size)
		return -EINVAL;
	mutex_lock(&tt_mr_lock);
	memcpy(buf, tt_mr_hw[i], mr->mr_size);
	memcpy(buf + mr->mr_size, data, mr->mr_size);
	rc = crypto_shash_tfm_digest(tfm, buf, 2 * mr->mr_size, out);
	if (!rc)
		memcpy(tt_mr_hw[i], out, mr->mr_size);
	mutex_unlock(&tt_mr_lock);
	return rc;
}

static int tt_mr_refresh(const struct tsm_measurements *tm)
{
	mutex_lock(&tt_mr_lock);
	memcpy(tt_rtmr0, tt_hw_rtmr0, sizeof(tt_rtmr0));
	memcpy(tt_rtmr1, tt_hw_rtmr1, sizeof(tt_rtmr1));
	mr_refreshes++;
	mutex_unlock(&tt_mr_lock);
	return 0;
}

static const struct tsm_measurements tt_tm = {
	.mrs = tt_mrs,
	.nr_mrs = ARRAY_SIZE(tt_mrs),
	.refresh = tt_mr_refresh,
	.write = tt_mr_write,
};

static const struct attribute_group *tt_mr_groups[2];	/* [0]: the group, NULL while there is none */

static const struct file_operations tt_mr_fops = {
	.owner = THIS_MODULE,
};

static struct miscdevice tt_mr_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "tsm_test",
	.fops = &tt_mr_fops,
	.groups = tt_mr_groups,
};

/* "TSMA", counter, then every register's current value (hw for the live ones) */
static u8 *tt_mr_auxblob(u32 n, size_t *len)
{
	u8 *b = kvzalloc(TT_MR_AUX_LEN, GFP_KERNEL);
	size_t i, off = 8;

	if (!b)
		return NULL;
	memcpy(b, "TSMA", 4);
	put32(b + 4, n);
	mutex_lock(&tt_mr_lock);
	for (i = 0; i < ARRAY_SIZE(tt_mrs); i++) {
		memcpy(b + off, tt_mr_hw[i], tt_mrs[i].mr_size);
		off += tt_mrs[i].mr_size;
	}
	mutex_unlock(&tt_mr_lock);
	*len = TT_MR_AUX_LEN;
	return b;
}

static void tt_mr_exit(void)
{
	if (!tt_mr_groups[0])
		return;
	misc_deregister(&tt_mr_dev);
	tsm_mr_free_attribute_group(tt_mr_groups[0]);
	tt_mr_groups[0] = NULL;
	crypto_free_shash(tt_sha256);
	crypto_free_shash(tt_sha384);
	tt_sha256 = tt_sha384 = NULL;
}

static int tt_mr_init(void)
{
	const struct attribute_group *grp;
	int rc;

	if (!measurements)
		return 0;
	tt_sha384 = crypto_alloc_shash("sha384", 0, 0);
	if (IS_ERR(tt_sha384)) {
		rc = PTR_ERR(tt_sha384);
		goto fail;
	}
	tt_sha256 = crypto_alloc_shash("sha256", 0, 0);
	if (IS_ERR(tt_sha256)) {
		rc = PTR_ERR(tt_sha256);
		goto fail;
	}
	grp = tsm_mr_create_attribute_group(&tt_tm);
	if (IS_ERR(grp)) {
		rc = PTR_ERR(grp);
		goto fail;
	}
	tt_mr_groups[0] = grp;
	rc = misc_register(&tt_mr_dev);
	if (rc) {
		tsm_mr_free_attribute_group(grp);
		tt_mr_groups[0] = NULL;
		goto fail;
	}
	return 0;
fail:
	if (!IS_ERR_OR_NULL(tt_sha256))
		crypto_free_shash(tt_sha256);
	if (!IS_ERR_OR_NULL(tt_sha384))
		crypto_free_shash(tt_sha384);
	tt_sha256 = tt_sha384 = NULL;
	return rc;
}
#endif

static u8 *tt_auxblob(u32 n, size_t *len)
{
#if TT_MR
	if (tt_mr_groups[0])
		return tt_mr_auxblob(n, len);
#endif
	return tag_blob("TSMA", n, len);
}

/*
 * plant_bug: copy the nonce into a buffer one byte too small, the classic off-by-one a provider
 * could ship.  KASAN reports it as slab-out-of-bounds in this function; the fuzzers must find it
 * from inblob values alone (tests/test_vm_fuzz.py, docs/vm.md).
 */
static noinline void tt_planted_overflow(const u8 *nonce, size_t len)
{
	u8 *copy = kmalloc(len, GFP_KERNEL);
	size_t i;

	if (!copy)
		return;
	for (i = 0; i <= len; i++)	/* <=: the bug */
		copy[i] = i < len ? nonce[i] : 0;
	kfree(copy);
}

static int tt_report_new(struct tsm_report *report, void *data)
{
	size_t size = max_t(size_t, outblob_size, TT_LAYOUT_LEN);
	size_t i, inlen = min_t(size_t, report->desc.inblob_len, TT_INBLOB_MAX);
	u32 flags = 0, smv = 0, n;
	u8 *out;

	if (delay_ms)
		msleep(delay_ms);
	if (fail_errno)
		return -abs(fail_errno);
	if (refuse_below_floor && report->desc.privlevel < privlevel_floor)
		return -EINVAL;

	n = ++calls;
	size += (size_t)(n % 8) * size_step;
	if (plant_bug && inlen >= 8 && report->desc.inblob[inlen - 1] >= 0xf0)
		tt_planted_overflow(report->desc.inblob, inlen);
	out = kvzalloc(size, GFP_KERNEL);
	if (!out) {
		calls--;
		return -ENOMEM;
	}
	memcpy(out, "TSMT", 4);
	put32(out + 0x04, 1);
	put32(out + 0x08, size);
	put32(out + 0x0C, n);
	put32(out + 0x10, report->desc.privlevel);
	put32(out + 0x14, report->desc.inblob_len);
#if TT_HAS_SERVICE
	smv = report->desc.service_manifest_version;
	if (report->desc.service_provider) {
		flags |= 1;
		strscpy(out + 0x80, report->desc.service_provider, 64);
	}
	memcpy(out + 0x20, &report->desc.service_guid, 16);
#endif
	put32(out + 0x18, smv);
	put32(out + 0x1C, flags);
	/* only the committed bytes: desc.inblob keeps older bytes past inblob_len */
	memcpy(out + 0x40, report->desc.inblob, inlen);
	for (i = TT_LAYOUT_LEN; i < size; i++)
		out[i] = (i * 31 + n) & 0xff;

	report->outblob = out;
	report->outblob_len = size;
	if (auxblob) {
		report->auxblob = tt_auxblob(n, &report->auxblob_len);
		if (!report->auxblob)
			return -ENOMEM;
	}
#if TT_HAS_SERVICE
	if (manifestblob) {
		report->manifestblob = tag_blob("TSMM", n, &report->manifestblob_len);
		if (!report->manifestblob)
			return -ENOMEM;
	}
#endif
	return 0;
}

#if TT_HOOKS
static bool tt_attr_visible(int n)
{
	if (!strcmp(visibility, "sev-like"))
		return n == TSM_REPORT_GENERATION || n == TSM_REPORT_PROVIDER ||
		       n == TSM_REPORT_PRIVLEVEL || n == TSM_REPORT_PRIVLEVEL_FLOOR;
	if (!strcmp(visibility, "tdx-like"))
		return n == TSM_REPORT_GENERATION || n == TSM_REPORT_PROVIDER;
	return true;
}

static bool tt_bin_attr_visible(int n)
{
	if (!strcmp(visibility, "sev-like"))
		return n == TSM_REPORT_INBLOB || n == TSM_REPORT_OUTBLOB || n == TSM_REPORT_AUXBLOB;
	if (!strcmp(visibility, "tdx-like"))
		return n == TSM_REPORT_INBLOB || n == TSM_REPORT_OUTBLOB;
	return true;
}
#endif

static struct TT_OPS tt_ops = {
	.name = "tsm_test",
	.report_new = tt_report_new,
#if TT_HOOKS
	.report_attr_visible = tt_attr_visible,
	.report_bin_attr_visible = tt_bin_attr_visible,
#endif
};

static int __init tt_init(void)
{
#if TT_MR
	int rc;

#endif
	if (privlevel_floor > 3)
		return -EINVAL;
	if (strcmp(visibility, "all") && strcmp(visibility, "sev-like") && strcmp(visibility, "tdx-like"))
		return -EINVAL;
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
	tt_ops.privlevel_floor = privlevel_floor;
#if TT_MR
	/* the registers first: the auxblob of the first report may carry them */
	rc = tt_mr_init();
	if (rc)
		return rc;
	rc = tsm_report_register(&tt_ops, NULL);
	if (rc)
		tt_mr_exit();
	return rc;
#else
	return tsm_report_register(&tt_ops, NULL);
#endif
#elif LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
	tt_ops.privlevel_floor = privlevel_floor;
	return tsm_register(&tt_ops, NULL);
#else
	/* privlevel_floor is const before 6.11: set through a cast at init, before registering */
	*(unsigned int *)&tt_ops.privlevel_floor = privlevel_floor;
	return tsm_register(&tt_ops, NULL, strcmp(visibility, "tdx-like") ?
			    &tsm_report_extra_type : &tsm_report_default_type);
#endif
}

static void __exit tt_exit(void)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 16, 0)
	tsm_report_unregister(&tt_ops);
#if TT_MR
	tt_mr_exit();
#endif
#else
	tsm_unregister(&tt_ops);
#endif
}

module_init(tt_init);
module_exit(tt_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("configfs-tsm test report provider (configfs-tsm-conformance)");
