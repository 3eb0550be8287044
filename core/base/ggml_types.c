#include "core/base/ggml_types.h"

typedef struct {
    int type;
    const char *name;
    int block_elems;
    int block_bytes;
    int supported;
} TypeInfo;

/* Every type whose block size is known, so a file holding types we cannot dequantize still opens and
 * the loader can name the tensor it cannot read. */
static const TypeInfo types[] = {
    {0, "F32", 1, 4, 1},         {1, "F16", 1, 2, 1},        {2, "Q4_0", 32, 18, 1},
    {3, "Q4_1", 32, 20, 1},      {6, "Q5_0", 32, 22, 1},     {7, "Q5_1", 32, 24, 1},
    {8, "Q8_0", 32, 34, 1},      {10, "Q2_K", 256, 84, 0},   {11, "Q3_K", 256, 110, 0},
    {12, "Q4_K", 256, 144, 1},   {13, "Q5_K", 256, 176, 1},  {14, "Q6_K", 256, 210, 1},
    {15, "Q8_K", 256, 292, 0},   {16, "IQ2_XXS", 256, 66, 0}, {17, "IQ2_XS", 256, 74, 0},
    {18, "IQ3_XXS", 256, 98, 0}, {19, "IQ1_S", 256, 50, 0},  {20, "IQ4_NL", 32, 18, 0},
    {21, "IQ3_S", 256, 110, 0},  {22, "IQ2_S", 256, 82, 0},  {23, "IQ4_XS", 256, 136, 0},
    {24, "I8", 1, 1, 0},         {25, "I16", 1, 2, 0},       {26, "I32", 1, 4, 0},
    {27, "I64", 1, 8, 0},        {28, "F64", 1, 8, 0},       {29, "IQ1_M", 256, 56, 0},
    {30, "BF16", 1, 2, 1},       {34, "TQ1_0", 256, 54, 0},  {35, "TQ2_0", 256, 66, 0},
    {39, "MXFP4", 32, 17, 0},
};

static const TypeInfo *type_info(GgmlType t) {
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].type == (int)t) return &types[i];
    return NULL;
}

int ggml_block_elems(GgmlType t) {
    const TypeInfo *ti = type_info(t);
    return ti ? ti->block_elems : 0;
}

size_t ggml_block_bytes(GgmlType t) {
    const TypeInfo *ti = type_info(t);
    return ti ? (size_t)ti->block_bytes : 0;
}

int ggml_type_supported(GgmlType t) {
    const TypeInfo *ti = type_info(t);
    return ti && ti->supported;
}

size_t ggml_row_bytes(GgmlType t, int64_t n) {
    const TypeInfo *ti = type_info(t);
    return ti ? (size_t)(n / ti->block_elems) * (size_t)ti->block_bytes : 0;
}

const char *ggml_type_name(GgmlType t) {
    if (t == GGML_NF4) return "NF4";
    const TypeInfo *ti = type_info(t);
    return ti ? ti->name : "unknown";
}
