/*
 * instruction_mix.c: a QEMU TCG plugin that counts the AArch64 instructions a program
 * executes under qemu-user, by class, for benches/instruction_counts.py.
 *
 * Why a plugin of our own: Debian's qemu-user (7.2, the dynamic build) loads plugins but ships
 * none, and the classes that decide an int8 budget on an Arm core (dot products, widening
 * multiply-accumulates, f32 multiply-adds, other SIMD, loads and stores) are not the ones
 * upstream's example plugins report.
 *
 * How it counts: when QEMU translates a block, each instruction is classified once from its
 * encoding, and the block gets one inline "add N" per class it holds; executing the block
 * then costs a few host adds, not a callback per instruction. The adds are not atomic: run the
 * program with one busy thread (`ptxd --threads 1`), or the counts of racing threads are
 * inexact.
 *
 * Build: gcc -O2 -shared -fPIC -o instruction_mix.so benches/instruction_mix.c
 * Use:   qemu-aarch64 -cpu cortex-a76 -plugin ./instruction_mix.so,out=counts.txt PROGRAM ...
 * The file gets one "class count" line per class, written when the program exits.
 *
 * The plugin API (version 1, QEMU 7.2) is declared below, only what is used: Debian ships no
 * qemu-plugin.h. The functions are resolved from the qemu-aarch64 binary at load time.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
const void *qemu_plugin_insn_data(const struct qemu_plugin_insn *insn);
size_t qemu_plugin_insn_size(const struct qemu_plugin_insn *insn);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* The classes, in the order they are written out. */
enum klass { DOT, MLAL, FMLA, SIMD, LDST, OTHER, NCLASS };
static const char *const NAMES[NCLASS] = {"dot", "mlal", "fmla", "simd", "ldst", "other"};
static uint64_t counts[NCLASS];
static char out_path[4096];

/*
 * One A64 instruction's class, from the Arm ARM's encoding tables (C4). Masks leave out the
 * Q bit (64- or 128-bit form), the element size where the class holds every size, and the
 * register fields.
 */
static const struct {
    uint32_t mask, value;
    enum klass klass;
} ENCODINGS[] = {
    /* SDOT/UDOT (vector; by element): the Armv8.2 dot product, four 8-bit products a lane;
     * the masks leave out U (bit 29), as for the classes below */
    {0x9FE0FC00u, 0x0E809400u, DOT},
    {0x9FC0F400u, 0x0F80E000u, DOT},
    /* SMLAL/UMLAL/SMLSL/UMLSL (vector; by element): widening integer multiply-accumulate */
    {0x9F20DC00u, 0x0E208000u, MLAL},
    {0x9F00B400u, 0x0F002000u, MLAL},
    /* FMLA/FMLS (vector, single and double; by element) */
    {0x9F20FC00u, 0x0E20CC00u, FMLA},
    {0x9F80B400u, 0x0F801000u, FMLA},
    /* loads and stores, general and SIMD: op0 = x1x0 */
    {0x0A000000u, 0x08000000u, LDST},
    /* the rest of SIMD and floating point data processing: op0 = x111 */
    {0x0E000000u, 0x0E000000u, SIMD},
};

/* The first class in ENCODINGS whose pattern `i` matches; OTHER for none. */
static enum klass classify(uint32_t i)
{
    for (size_t k = 0; k < sizeof ENCODINGS / sizeof ENCODINGS[0]; k++)
        if ((i & ENCODINGS[k].mask) == ENCODINGS[k].value)
            return ENCODINGS[k].klass;
    return OTHER;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    uint64_t in_block[NCLASS] = {0};
    size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t k = 0; k < n; k++) {
        const struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, k);
        uint32_t word = 0;
        if (qemu_plugin_insn_size(insn) == 4)
            memcpy(&word, qemu_plugin_insn_data(insn), 4);
        in_block[classify(word)]++;
    }
    for (int c = 0; c < NCLASS; c++)
        if (in_block[c])
            qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &counts[c],
                                                     in_block[c]);
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    FILE *f = fopen(out_path, "w");
    if (!f) {
        perror(out_path);
        return;
    }
    for (int c = 0; c < NCLASS; c++)
        fprintf(f, "%s %llu\n", NAMES[c], (unsigned long long)counts[c]);
    fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info, int argc,
                                                               char **argv)
{
    (void)info;
    for (int k = 0; k < argc; k++)
        if (strncmp(argv[k], "out=", 4) == 0)
            snprintf(out_path, sizeof out_path, "%s", argv[k] + 4);
    if (!out_path[0]) {
        fprintf(stderr, "instruction_mix: give the output file as out=PATH\n");
        return 1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
