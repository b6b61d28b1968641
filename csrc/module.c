/*
 * module.c — the module object of vgrad._C: its method table (generated from functions.def) and its
 * initialisation. Multi-phase init (PEP 489). The module's state (vg_module_state) is the NumPy objects of
 * npyloops.c (ufuncs, their inner loops, the UseReference exception), set once at import and never changed:
 * every function is otherwise a pure function of its arguments, so there is no global mutable state, and the
 * module is safe in threads.
 */
#define VGRAD_MODULE_C
#include "vgrad.h"

static PyMethodDef vgrad_methods[] = {
#define VG_FUNC(name, doc) {#name, (PyCFunction)(void (*)(void))vg_##name, METH_FASTCALL, doc},
#include "functions.def"
#undef VG_FUNC
    {NULL, NULL, 0, NULL},
};

static int vgrad_exec(PyObject *module)
{
    /* import_array() is a macro that returns NULL on failure; wrap it so this function returns -1. */
    if (PyArray_ImportNumPyAPI() < 0)
        return -1;
    return vg_numpy_state_init(module);
}

static int vgrad_traverse(PyObject *module, visitproc visit, void *arg)
{
    return vg_numpy_state_traverse(module, visit, arg);
}

static int vgrad_clear(PyObject *module)
{
    vg_numpy_state_clear(module);
    return 0;
}

static void vgrad_free(void *module)
{
    vgrad_clear((PyObject *)module);
}

static PyModuleDef_Slot vgrad_slots[] = {
    {Py_mod_exec, vgrad_exec},
    {0, NULL},
};

static struct PyModuleDef vgrad_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vgrad._C",
    .m_doc = "C kernels of vgrad: forward and backward of every built-in op.",
    .m_size = sizeof(vg_module_state),
    .m_methods = vgrad_methods,
    .m_slots = vgrad_slots,
    .m_traverse = vgrad_traverse,
    .m_clear = vgrad_clear,
    .m_free = vgrad_free,
};

PyMODINIT_FUNC PyInit__C(void)
{
    return PyModuleDef_Init(&vgrad_module);
}
