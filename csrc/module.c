/*
 * module.c — the module object of vgrad._C: its method table (generated from functions.def) and its
 * initialisation. Multi-phase init (PEP 489). The module has no state: every function is a pure function of
 * its arguments, so there is no global mutable state, and the module is safe in threads.
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
    return 0;
}

static PyModuleDef_Slot vgrad_slots[] = {
    {Py_mod_exec, vgrad_exec},
    {0, NULL},
};

static struct PyModuleDef vgrad_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vgrad._C",
    .m_doc = "C kernels of vgrad: forward and backward of every built-in op.",
    .m_size = 0,
    .m_methods = vgrad_methods,
    .m_slots = vgrad_slots,
};

PyMODINIT_FUNC PyInit__C(void)
{
    return PyModuleDef_Init(&vgrad_module);
}
