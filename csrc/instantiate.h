/*
 * instantiate.h — compiles a kernel template for float and for double. A template is a header that defines
 * (or declares) kernels for a generic element type T, naming each VG_T(name); a file instantiates it with
 *
 *     #define VG_TEMPLATE "elementwise_kernels.h"
 *     #include "instantiate.h"
 *
 * which includes the template twice: with T float and SFX f32, then with T double and SFX f64, so that
 * VG_T(sigmoid_backward) becomes sigmoid_backward_f32 and then sigmoid_backward_f64 (VG_T is in vgrad.h).
 * Each kernel is an ordinary function at the template's own lines, for the compiler's messages and for the
 * debugger; grep finds it by its name. Templates have no include guard, on purpose; T, SFX and VG_TEMPLATE
 * are undefined afterwards.
 */
#ifndef VG_TEMPLATE
#error "define VG_TEMPLATE as the template's file name before including instantiate.h"
#endif

#define T float
#define SFX f32
#include VG_TEMPLATE
#undef T
#undef SFX

#define T double
#define SFX f64
#include VG_TEMPLATE
#undef T
#undef SFX

#undef VG_TEMPLATE
