/* kiln_insncount: exact guest-instruction counts of marked regions, a QEMU TCG plugin.
 *
 * Every executed instruction bumps one counter (inline, no callback). Entering the symbol
 * `bench_start` snapshots it; entering `bench_stop` prints
 *   insncount: region N: K instructions
 * (K counted from bench_start's first instruction, so the markers' own instructions are in
 * it: 5 on Arm, 4 on RISC-V, which `kiln sim` subtracts). At exit it prints the total.
 *
 * Built by `kiln sim` with the system C compiler. QEMU 7.2 (Debian's qemu-system-arm and
 * qemu-system-misc) loads plugins but ships no header for them, so the few entry points used
 * are declared below, as the plugin API (version 1) defines them.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* only passed through */
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS = 0 };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
const char *qemu_plugin_insn_symbol(const struct qemu_plugin_insn *);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *, qemu_plugin_vcpu_udata_cb_t,
                                            enum qemu_plugin_cb_flags, void *);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *, enum qemu_plugin_op,
                                                void *, uint64_t);
void qemu_plugin_outs(const char *);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t executed;   /* every instruction, bumped inline */
static uint64_t at_start;   /* `executed` when bench_start was entered */
static int in_region;
static unsigned n_regions;

static void enter_start(unsigned int vcpu, void *userdata) {
    (void)vcpu;
    (void)userdata;
    if (!in_region) {
        at_start = executed;
        in_region = 1;
    }
}

static void enter_stop(unsigned int vcpu, void *userdata) {
    char line[96];
    (void)vcpu;
    (void)userdata;
    if (in_region) {
        snprintf(line, sizeof line, "insncount: region %u: %" PRIu64 " instructions\n",
                 n_regions++, executed - at_start);
        qemu_plugin_outs(line);
        in_region = 0;
    }
}

static int is_symbol(const struct qemu_plugin_insn *insn, const char *name) {
    const char *symbol = qemu_plugin_insn_symbol(insn);
    return symbol != NULL && strcmp(symbol, name) == 0;
}

static void translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    size_t n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        /* The marker callbacks run before the instruction's own count is added. */
        if (is_symbol(insn, "bench_start"))
            qemu_plugin_register_vcpu_insn_exec_cb(insn, enter_start, QEMU_PLUGIN_CB_NO_REGS, NULL);
        if (is_symbol(insn, "bench_stop"))
            qemu_plugin_register_vcpu_insn_exec_cb(insn, enter_stop, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
    }
}

static void at_exit(qemu_plugin_id_t id, void *userdata) {
    char line[96];
    (void)id;
    (void)userdata;
    snprintf(line, sizeof line, "insncount: total %" PRIu64 " instructions\n", executed);
    qemu_plugin_outs(line);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv) {
    (void)info;
    (void)argv;
    if (argc != 0) {
        fprintf(stderr, "kiln_insncount: takes no arguments\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translate);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
