/*
 * graph.c — compiled twins of the graph machinery in vgrad/core.py: Op.do_forward, the backward traversal
 * (TensorNode.backward), zero_grad and clear. core.py holds the readable Python versions, which are the
 * specification: these take exactly the same steps in the same order (the tests run both and compare).
 * They exist because for the small tensors of the course's networks the interpreter's cost per step is
 * most of the time.
 *
 * TensorNode and OpNode are Python classes with __slots__. core.py registers them once
 * (register_node_types); we then read and write their slots directly at the offsets Python gave them,
 * after checking each object's type, instead of going through attribute lookup. Each op's forward() and
 * backward() is still called as Python calls it. Gradients are accumulated as in core._run_backward: the
 * first contribution is kept (when the op promises a new array and it is C-ordered) or copied, in C order,
 * into the value's float dtype; later ones are added in place.
 */
#include "vgrad.h"

#include <structmember.h>

typedef vg_graph_state graph_state;

static graph_state *state_of(PyObject *module)
{
    vg_module_state *st = PyModule_GetState(module);
    return st == NULL ? NULL : &st->graph;
}

/* The slot of obj at `offset`: a borrowed reference, NULL when unset. */
#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static void set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    PyObject *old = SLOT(obj, offset);
    Py_XINCREF(value);
    SLOT(obj, offset) = value;
    Py_XDECREF(old);
}

/* A slot that must be set (AttributeError, as Python would raise, if it is not). Borrowed. */
static PyObject *need_slot(PyObject *obj, Py_ssize_t offset, const char *name)
{
    PyObject *v = SLOT(obj, offset);
    if (v == NULL)
        PyErr_Format(PyExc_AttributeError, "'%s' object has no attribute '%s'", Py_TYPE(obj)->tp_name, name);
    return v;
}

static int is_node(graph_state *st, PyObject *obj)
{
    return PyObject_TypeCheck(obj, st->tensor_type);
}

static int check_node(graph_state *st, PyObject *obj)
{
    if (is_node(st, obj))
        return 0;
    PyErr_Format(PyExc_TypeError, "the graph holds a %s where a TensorNode should be", Py_TYPE(obj)->tp_name);
    return -1;
}

/* The OpNode in node.source, borrowed; NULL for None (no exception) or on error (exception set). */
static PyObject *source_of(graph_state *st, PyObject *node)
{
    PyObject *src = SLOT(node, st->t_source);
    if (src == NULL || src == Py_None)
        return NULL;
    if (!PyObject_TypeCheck(src, st->opnode_type)) {
        PyErr_Format(PyExc_TypeError, "a TensorNode's source is a %s, not an OpNode", Py_TYPE(src)->tp_name);
        return NULL;
    }
    return src;
}

/* op.inputs as a borrowed tuple; NULL for None (cleared: no exception) or on error. */
static PyObject *inputs_of(graph_state *st, PyObject *op)
{
    PyObject *inputs = SLOT(op, st->o_inputs);
    if (inputs == NULL || inputs == Py_None)
        return NULL;
    if (!PyTuple_Check(inputs)) {
        PyErr_SetString(PyExc_TypeError, "an OpNode's inputs must be a tuple of TensorNodes");
        return NULL;
    }
    return inputs;
}

/* obj.slot += delta for an int slot (visits, numparents) */
static int slot_add(PyObject *obj, Py_ssize_t offset, Py_ssize_t delta)
{
    PyObject *v = SLOT(obj, offset);
    Py_ssize_t i = v == NULL ? 0 : PyLong_AsSsize_t(v);
    if (i == -1 && PyErr_Occurred())
        return -1;
    PyObject *w = PyLong_FromSsize_t(i + delta);
    if (w == NULL)
        return -1;
    set_slot(obj, offset, w);
    Py_DECREF(w);
    return 0;
}

static int requires_grad(graph_state *st, PyObject *node)
{
    PyObject *v = SLOT(node, st->t_requires_grad);
    if (v == Py_True)
        return 1;
    if (v == Py_False || v == NULL)
        return 0;
    return PyObject_IsTrue(v);
}

/* dict[key] += delta (a missing key counts as 0); the new count, or -1 with an exception */
static Py_ssize_t count_add(PyObject *dict, PyObject *key, Py_ssize_t delta)
{
    PyObject *v = PyDict_GetItemWithError(dict, key); /* borrowed */
    Py_ssize_t c = 0;
    if (v != NULL)
        c = PyLong_AsSsize_t(v);
    else if (PyErr_Occurred())
        return -1;
    c += delta;
    PyObject *w = PyLong_FromSsize_t(c);
    if (w == NULL || PyDict_SetItem(dict, key, w) < 0) {
        Py_XDECREF(w);
        return -1;
    }
    Py_DECREF(w);
    return c;
}

/* ---- registration --------------------------------------------------------------------------------- */

/* The offset of the __slots__ member `name` of `type`, or -1 with an exception. */
static Py_ssize_t slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    if (d == NULL)
        return -1;
    Py_ssize_t off = -1;
    if (Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX)
        off = ((PyMemberDescrObject *)d)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "%s.%s must be a __slots__ member", type->tp_name, name);
    Py_DECREF(d);
    return off;
}

/* register_node_types(TensorNode, OpNode, grad_mode) */
VG_BOUNDARY(register_node_types)
{
    graph_state *st = state_of(module);
    if (vg_check_nargs("register_node_types", nargs, 3) < 0)
        return NULL;
    if (!PyType_Check(args[0]) || !PyType_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "register_node_types: expected the TensorNode and OpNode classes");
        return NULL;
    }
    PyTypeObject *t = (PyTypeObject *)args[0], *o = (PyTypeObject *)args[1];
#define OFFSET(field, type, name)                         \
    if ((st->field = slot_offset(type, name)) < 0)         \
        return NULL;
    OFFSET(t_value, t, "value") OFFSET(t_source, t, "source") OFFSET(t_grad, t, "_grad")
    OFFSET(t_requires_grad, t, "requires_grad") OFFSET(t_numparents, t, "numparents") OFFSET(t_visits, t, "visits")
    OFFSET(t_name, t, "name") OFFSET(t_debug, t, "debug")
    OFFSET(o_op, o, "op") OFFSET(o_context, o, "context") OFFSET(o_inputs, o, "inputs") OFFSET(o_outputs, o, "outputs")
    OFFSET(o_visits, o, "visits")
#undef OFFSET
    Py_INCREF(t);
    Py_XSETREF(st->tensor_type, t);
    Py_INCREF(o);
    Py_XSETREF(st->opnode_type, o);
    Py_INCREF(args[2]);
    Py_XSETREF(st->grad_mode, args[2]);
    Py_RETURN_NONE;
}

static int registered(graph_state *st)
{
    if (st->tensor_type != NULL)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "vgrad._C: the node types are not registered (import vgrad first)");
    return 0;
}

int vg_graph_state_init(PyObject *module)
{
    graph_state *st = state_of(module);
    if ((st->forward = PyUnicode_InternFromString("forward")) == NULL ||
        (st->backward = PyUnicode_InternFromString("backward")) == NULL ||
        (st->fresh = PyUnicode_InternFromString("backward_returns_new_arrays")) == NULL ||
        (st->enabled = PyUnicode_InternFromString("enabled")) == NULL ||
        (st->grad = PyUnicode_InternFromString("grad")) == NULL ||
        (st->needs_input_grad = PyUnicode_InternFromString("needs_input_grad")) == NULL)
        return -1;
    return 0;
}

void vg_graph_state_clear(PyObject *module)
{
    graph_state *st = state_of(module);
    if (st == NULL)
        return;
    Py_CLEAR(st->forward);
    Py_CLEAR(st->backward);
    Py_CLEAR(st->fresh);
    Py_CLEAR(st->enabled);
    Py_CLEAR(st->grad);
    Py_CLEAR(st->needs_input_grad);
    Py_CLEAR(st->tensor_type);
    Py_CLEAR(st->opnode_type);
    Py_CLEAR(st->grad_mode);
}

int vg_graph_state_traverse(PyObject *module, visitproc visit, void *arg)
{
    graph_state *st = state_of(module);
    if (st == NULL)
        return 0;
    Py_VISIT(st->tensor_type);
    Py_VISIT(st->opnode_type);
    Py_VISIT(st->grad_mode);
    return 0;
}

/* ---- nodes (TensorNode.__init__, OpNode.__init__) ------------------------------------------------- */

/* A new TensorNode, as TensorNode(value, source, requires_grad=...) would make it. */
static PyObject *new_node(graph_state *st, PyObject *value, PyObject *source, int wants_grad)
{
    PyObject *array = PyArray_Check(value) ? (Py_INCREF(value), value) : PyArray_FROM_O(value);
    if (array == NULL)
        return NULL;
    PyObject *node = st->tensor_type->tp_alloc(st->tensor_type, 0);
    if (node == NULL) {
        Py_DECREF(array);
        return NULL;
    }
    PyObject *zero = PyLong_FromLong(0);
    set_slot(node, st->t_name, Py_None);
    SLOT(node, st->t_value) = array; /* steals */
    set_slot(node, st->t_source, source);
    set_slot(node, st->t_grad, Py_None);
    set_slot(node, st->t_debug, Py_False);
    set_slot(node, st->t_requires_grad, wants_grad ? Py_True : Py_False);
    set_slot(node, st->t_numparents, zero);
    set_slot(node, st->t_visits, zero);
    Py_XDECREF(zero);
    return node;
}

static PyObject *new_opnode(graph_state *st, PyObject *op, PyObject *context, PyObject *inputs)
{
    PyObject *node = st->opnode_type->tp_alloc(st->opnode_type, 0);
    if (node == NULL)
        return NULL;
    PyObject *zero = PyLong_FromLong(0);
    set_slot(node, st->o_op, op);
    set_slot(node, st->o_context, context);
    set_slot(node, st->o_inputs, inputs);
    set_slot(node, st->o_outputs, Py_None);
    set_slot(node, st->o_visits, zero);
    Py_XDECREF(zero);
    return node;
}

/* ---- do_forward (Op.do_forward) ------------------------------------------------------------------- */

/* do_forward(cls, inputs, kwargs) */
VG_BOUNDARY(do_forward)
{
    graph_state *st = state_of(module);
    if (vg_check_nargs("do_forward", nargs, 3) < 0 || !registered(st))
        return NULL;
    PyObject *cls = args[0], *inputs = args[1], *kwargs = args[2];
    if (!PyType_Check(cls) || !PyTuple_Check(inputs) || !PyDict_Check(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "do_forward(cls, inputs, kwargs): an Op class, a tuple and a dict");
        return NULL;
    }
    const char *name = ((PyTypeObject *)cls)->tp_name;
    Py_ssize_t n = PyTuple_GET_SIZE(inputs);
    PyObject *small[8], **argv = small, *context = NULL, *forward = NULL, *raw = NULL, *result = NULL;
    PyObject *opnode = NULL, *outputs = NULL;
    if (n + 1 > 8 && (argv = PyMem_Calloc((size_t)n + 1, sizeof(PyObject *))) == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i <= n; i++)
        argv[i] = NULL;

    int tracked = 0, untracked = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *node = PyTuple_GET_ITEM(inputs, i);
        if (!is_node(st, node)) {
            PyErr_Format(PyExc_TypeError,
                         "%s: input %zd has type %s, but all inputs to an op must be TensorNodes (wrap arrays with "
                         "vg.TensorNode(array); constants such as dim=... go in keyword arguments)",
                         name, i, Py_TYPE(node)->tp_name);
            goto done;
        }
        int wants = requires_grad(st, node);
        if (wants < 0)
            goto done;
        tracked |= wants;
        untracked |= !wants;
        PyObject *value = need_slot(node, st->t_value, "value");
        if (value == NULL)
            goto done;
        Py_INCREF(value);
        argv[i + 1] = value;
    }
    if ((context = PyDict_New()) == NULL)
        goto done;
    if (tracked && untracked) { /* which gradients are wanted (see core.Op.do_forward) */
        PyObject *needs = PyTuple_New(n);
        if (needs == NULL)
            goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *flag = requires_grad(st, PyTuple_GET_ITEM(inputs, i)) ? Py_True : Py_False;
            Py_INCREF(flag);
            PyTuple_SET_ITEM(needs, i, flag);
        }
        int rc = PyDict_SetItem(context, st->needs_input_grad, needs);
        Py_DECREF(needs);
        if (rc < 0)
            goto done;
    }
    argv[0] = context;
    if ((forward = PyObject_GetAttr(cls, st->forward)) == NULL)
        goto done;
    if (PyDict_GET_SIZE(kwargs) == 0)
        raw = PyObject_Vectorcall(forward, argv, (size_t)n + 1, NULL);
    else {
        PyObject *tuple = PyTuple_New(n + 1);
        if (tuple == NULL)
            goto done;
        for (Py_ssize_t i = 0; i <= n; i++) {
            Py_INCREF(argv[i]);
            PyTuple_SET_ITEM(tuple, i, argv[i]);
        }
        raw = PyObject_Call(forward, tuple, kwargs);
        Py_DECREF(tuple);
    }
    if (raw == NULL)
        goto done;

    PyObject *mode = PyObject_GetAttr(st->grad_mode, st->enabled);
    int enabled = mode == NULL ? -1 : PyObject_IsTrue(mode);
    Py_XDECREF(mode);
    if (enabled < 0)
        goto done;
    int graph = tracked && enabled;
    if (graph) {
        /* Count the parents only once forward has succeeded, so a failed op leaves the graph untouched. */
        for (Py_ssize_t i = 0; i < n; i++)
            if (slot_add(PyTuple_GET_ITEM(inputs, i), st->t_numparents, 1) < 0)
                goto done;
        if ((opnode = new_opnode(st, cls, context, inputs)) == NULL)
            goto done;
    }
    PyObject *source = graph ? opnode : Py_None;
    if (!PyTuple_Check(raw)) { /* one output, the usual case */
        if ((result = new_node(st, raw, source, graph)) == NULL)
            goto done;
        if (graph && (outputs = PyList_New(1)) != NULL) {
            Py_INCREF(result);
            PyList_SET_ITEM(outputs, 0, result);
        }
    }
    else {
        Py_ssize_t m = PyTuple_GET_SIZE(raw);
        if ((outputs = PyList_New(m)) == NULL)
            goto done;
        for (Py_ssize_t j = 0; j < m; j++) {
            PyObject *out = new_node(st, PyTuple_GET_ITEM(raw, j), source, graph);
            if (out == NULL)
                goto done;
            PyList_SET_ITEM(outputs, j, out);
        }
        if (m == 1) {
            result = PyList_GET_ITEM(outputs, 0);
            Py_INCREF(result);
        }
        else {
            result = outputs;
            Py_INCREF(result);
        }
    }
    if (graph) {
        if (outputs == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        set_slot(opnode, st->o_outputs, outputs);
    }
done:
    for (Py_ssize_t i = 1; i <= n; i++)
        Py_XDECREF(argv[i]);
    if (argv != small)
        PyMem_Free(argv);
    Py_XDECREF(context);
    Py_XDECREF(forward);
    Py_XDECREF(raw);
    Py_XDECREF(opnode);
    Py_XDECREF(outputs);
    return result;
}

/* ---- accumulating a gradient (core._run_backward's loop body) ------------------------------------- */

/* current += grad for two C-contiguous arrays of one float type and size: the common case, in a loop. */
#define DEFINE_ADD_INTO(T, S)                                                                           \
    static void add_into_##S(T *restrict current, const T *restrict grad, npy_intp n)                  \
    {                                                                                                   \
        for (npy_intp i = 0; i < n; i++)                                                                \
            current[i] += grad[i];                                                                      \
    }
VG_INSTANTIATE(DEFINE_ADD_INTO)

static int accumulate(graph_state *st, PyObject *opcls, Py_ssize_t index, PyObject *node, PyObject *grad_obj,
                      int fresh)
{
    int rc = -1;
    PyObject *value_obj = need_slot(node, st->t_value, "value");
    if (value_obj == NULL)
        return -1;
    if (!PyArray_Check(grad_obj) && !PyArray_IsScalar(grad_obj, Generic) && !PyNumber_Check(grad_obj) &&
        !PyList_Check(grad_obj)) {
        PyErr_Format(PyExc_TypeError, "%s.backward returned a %s for input %zd, not an array",
                     ((PyTypeObject *)opcls)->tp_name, Py_TYPE(grad_obj)->tp_name, index);
        return -1;
    }
    PyArrayObject *grad = (PyArrayObject *)PyArray_FROM_O(grad_obj);
    PyArrayObject *value = (PyArrayObject *)PyArray_FROM_O(value_obj);
    if (grad == NULL || value == NULL)
        goto done;
    if (!PyArray_SAMESHAPE(grad, value)) {
        PyObject *gs = PyArray_IntTupleFromIntp(PyArray_NDIM(grad), PyArray_DIMS(grad));
        PyObject *vs = PyArray_IntTupleFromIntp(PyArray_NDIM(value), PyArray_DIMS(value));
        if (gs && vs)
            PyErr_Format(PyExc_ValueError,
                         "%s.backward returned a gradient of shape %S for input %zd, which has shape %S: they "
                         "must be equal", ((PyTypeObject *)opcls)->tp_name, gs, index, vs);
        Py_XDECREF(gs);
        Py_XDECREF(vs);
        goto done;
    }
    PyObject *current = SLOT(node, st->t_grad); /* borrowed */
    if (current == NULL || current == Py_None) {
        /* The first contribution: keep the array itself if it belongs to nobody else, else copy it. */
        int dtype = PyTypeNum_ISFLOAT(PyArray_TYPE(value)) ? PyArray_TYPE(value) : NPY_DOUBLE;
        if (fresh && PyArray_CheckExact(grad_obj) && PyArray_TYPE(grad) == dtype && PyArray_ISNOTSWAPPED(grad) &&
            PyArray_IS_C_CONTIGUOUS(grad)) {
            set_slot(node, st->t_grad, (PyObject *)grad);
            rc = 0;
        }
        else { /* a C-ordered copy (is_f_order 0), as core.py's np.array(grad, dtype=dtype, order='C') */
            PyObject *copy = PyArray_CastToType(grad, PyArray_DescrFromType(dtype), 0);
            if (copy != NULL) {
                set_slot(node, st->t_grad, copy);
                Py_DECREF(copy);
                rc = 0;
            }
        }
        goto done;
    }
    PyArrayObject *cur = (PyArrayObject *)current;
    if (PyArray_CheckExact(current) && PyArray_CheckExact((PyObject *)grad) &&
        PyArray_TYPE(cur) == PyArray_TYPE(grad) &&
        (PyArray_TYPE(cur) == NPY_FLOAT || PyArray_TYPE(cur) == NPY_DOUBLE) && PyArray_ISCARRAY(cur) &&
        PyArray_ISCARRAY_RO(grad) && PyArray_ISNOTSWAPPED(cur) && PyArray_ISNOTSWAPPED(grad) &&
        PyArray_SIZE(cur) == PyArray_SIZE(grad) && PyArray_DATA(cur) != PyArray_DATA(grad)) {
        VG_CALL(PyArray_TYPE(cur), add_into, PyArray_DATA(cur), PyArray_DATA(grad), PyArray_SIZE(cur));
        rc = 0;
        goto done;
    }
    /* Anything else (another dtype or layout, or a gradient a student put there): NumPy's +=. */
    Py_INCREF(current);
    PyObject *sum = PyNumber_InPlaceAdd(current, (PyObject *)grad);
    if (sum != NULL) {
        if (sum != current) /* += made a new object (current was not an ndarray): keep it, as Python does */
            set_slot(node, st->t_grad, sum);
        Py_DECREF(sum);
        rc = 0;
    }
    Py_DECREF(current);
done:
    Py_XDECREF(grad);
    Py_XDECREF(value);
    return rc;
}

/* ---- running one op's backward (core._run_backward) ---------------------------------------------- */

/* The gradient over an output node: its .grad, through the property when none is allocated yet (it
   gives zeros then). A new reference. */
static PyObject *output_grad(graph_state *st, PyObject *node)
{
    PyObject *g = SLOT(node, st->t_grad);
    if (g != NULL && g != Py_None) {
        Py_INCREF(g);
        return g;
    }
    return PyObject_GetAttr(node, st->grad);
}

static int run_backward(graph_state *st, PyObject *opnode, PyObject *inputs)
{
    PyObject *small[8], **argv = small, *outputs = NULL, *backward = NULL, *result = NULL, *ginputs = NULL;
    Py_ssize_t nout = 0;
    int rc = -1;
    PyObject *opcls = need_slot(opnode, st->o_op, "op"), *context = need_slot(opnode, st->o_context, "context");
    PyObject *outputs_obj = need_slot(opnode, st->o_outputs, "outputs");
    if (opcls == NULL || context == NULL || outputs_obj == NULL)
        return -1;
    Py_INCREF(opcls);
    Py_INCREF(context);
    if ((outputs = PySequence_Tuple(outputs_obj)) == NULL)
        goto done;
    nout = PyTuple_GET_SIZE(outputs);
    if (nout + 1 > 8 && (argv = PyMem_Calloc((size_t)nout + 1, sizeof(PyObject *))) == NULL) {
        PyErr_NoMemory();
        argv = small;
        nout = 0;
        goto done;
    }
    for (Py_ssize_t i = 1; i <= nout; i++)
        argv[i] = NULL;
    argv[0] = context;
    for (Py_ssize_t i = 0; i < nout; i++) {
        PyObject *out = PyTuple_GET_ITEM(outputs, i);
        if (check_node(st, out) < 0 || (argv[i + 1] = output_grad(st, out)) == NULL)
            goto done;
    }
    if ((backward = PyObject_GetAttr(opcls, st->backward)) == NULL ||
        (result = PyObject_Vectorcall(backward, argv, (size_t)nout + 1, NULL)) == NULL)
        goto done;

    if (result == Py_None) {
        PyErr_Format(PyExc_ValueError,
                     "%s.backward returned None: did you forget `return`? (To say that no gradient flows to an "
                     "input, put None for it in a tuple, one entry per input.)", ((PyTypeObject *)opcls)->tp_name);
        goto done;
    }
    if (PyTuple_CheckExact(result))
        ginputs = (Py_INCREF(result), result);
    else if (PyList_Check(result))
        ginputs = PyList_AsTuple(result);
    else
        ginputs = PyTuple_Pack(1, result);
    if (ginputs == NULL)
        goto done;
    Py_ssize_t nin = PyTuple_GET_SIZE(inputs);
    if (PyTuple_GET_SIZE(ginputs) != nin) {
        Py_ssize_t ngrad = PyTuple_GET_SIZE(ginputs);
        PyErr_Format(PyExc_ValueError,
                     "%s.backward returned %zd gradient%s, but the op has %zd input%s: return one gradient per "
                     "input, in order", ((PyTypeObject *)opcls)->tp_name, ngrad, ngrad == 1 ? "" : "s", nin,
                     nin == 1 ? "" : "s");
        goto done;
    }
    PyObject *fresh_obj = PyObject_GetAttr(opcls, st->fresh);
    int fresh = fresh_obj == NULL ? -1 : PyObject_IsTrue(fresh_obj);
    Py_XDECREF(fresh_obj);
    if (fresh < 0)
        goto done;
    for (Py_ssize_t i = 0; i < nin; i++) {
        PyObject *grad = PyTuple_GET_ITEM(ginputs, i), *node = PyTuple_GET_ITEM(inputs, i);
        if (grad == Py_None)
            continue; /* the op declares that no gradient flows there */
        if (check_node(st, node) < 0)
            goto done;
        int wanted = requires_grad(st, node);
        if (wanted < 0 || (wanted && accumulate(st, opcls, i, node, grad, fresh) < 0))
            goto done;
    }
    rc = 0;
done:
    for (Py_ssize_t i = 1; i <= nout; i++)
        Py_XDECREF(argv[i]);
    if (argv != small)
        PyMem_Free(argv);
    Py_DECREF(opcls);
    Py_DECREF(context);
    Py_XDECREF(outputs);
    Py_XDECREF(backward);
    Py_XDECREF(result);
    Py_XDECREF(ginputs);
    return rc;
}

/* ---- backpropagate (core._backpropagate) ---------------------------------------------------------- */

/* One pending OpNode.backward() call of vugrad's recursion: visit the op's inputs in order. */
typedef struct {
    PyObject *inputs; /* a strong reference to the op's inputs tuple */
    Py_ssize_t next;
} frame;

/* A visit to an op through one of its outputs: counts down its waiting outputs; when none are left the
   op runs its backward and a frame is pushed to visit its inputs. */
static int arrive(graph_state *st, PyObject *op, PyObject *waiting_outputs, frame **frames, Py_ssize_t *depth,
                  Py_ssize_t *capacity)
{
    int counted = PyDict_Contains(waiting_outputs, op); /* not counted: cleared, nothing to do */
    if (counted <= 0)
        return counted;
    if (slot_add(op, st->o_visits, 1) < 0)
        return -1;
    Py_ssize_t left = count_add(waiting_outputs, op, -1);
    if (left != 0)
        return left < 0 ? -1 : 0;
    PyObject *inputs = inputs_of(st, op);
    if (inputs == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(inputs);
    if (run_backward(st, op, inputs) < 0) {
        Py_DECREF(inputs);
        return -1;
    }
    if (*depth == *capacity) {
        Py_ssize_t grown = *capacity * 2 + 16;
        frame *more = PyMem_Realloc(*frames, (size_t)grown * sizeof(frame));
        if (more == NULL) {
            Py_DECREF(inputs);
            PyErr_NoMemory();
            return -1;
        }
        *frames = more;
        *capacity = grown;
    }
    (*frames)[*depth].inputs = inputs;
    (*frames)[*depth].next = 0;
    (*depth)++;
    return 0;
}

VG_BOUNDARY(backpropagate)
{
    graph_state *st = state_of(module);
    PyObject *waiting_parents = NULL, *waiting_outputs = NULL, *stack = NULL, *result = NULL;
    frame *frames = NULL;
    Py_ssize_t depth = 0, capacity = 0;
    if (vg_check_nargs("backpropagate", nargs, 1) < 0 || !registered(st) || check_node(st, args[0]) < 0)
        return NULL;
    PyObject *loss = args[0];
    if ((waiting_parents = PyDict_New()) == NULL || (waiting_outputs = PyDict_New()) == NULL ||
        (stack = PyList_New(0)) == NULL || PyList_Append(stack, loss) < 0)
        goto done;

    /* Pass 1: count, below the loss, the op inputs each node is given to and the outputs of each op, and
       forget the intermediate nodes' old gradients. */
    while (PyList_GET_SIZE(stack) > 0) {
        Py_ssize_t last = PyList_GET_SIZE(stack) - 1;
        PyObject *node = PyList_GET_ITEM(stack, last);
        PyObject *op = source_of(st, node); /* borrowed; node (and so op) stays alive in the graph */
        Py_INCREF(node);
        int failed = PyList_SetSlice(stack, last, last + 1, NULL) < 0;
        PyObject *inputs = failed || op == NULL ? NULL : inputs_of(st, op);
        if (!failed && inputs != NULL) {
            int seen = PyDict_Contains(waiting_outputs, op);
            failed = seen < 0 || count_add(waiting_outputs, op, 1) < 0;
            for (Py_ssize_t i = 0; !failed && !seen && i < PyTuple_GET_SIZE(inputs); i++) {
                PyObject *parent = PyTuple_GET_ITEM(inputs, i);
                int wanted = check_node(st, parent) < 0 ? -1 : requires_grad(st, parent);
                Py_ssize_t c = wanted <= 0 ? 0 : count_add(waiting_parents, parent, 1);
                failed = wanted < 0 || c < 0 || (c == 1 && PyList_Append(stack, parent) < 0);
                if (!failed && c == 1 && source_of(st, parent) != NULL) /* intermediate: start afresh */
                    set_slot(parent, st->t_grad, Py_None);
            }
        }
        Py_DECREF(node);
        if (failed || PyErr_Occurred())
            goto done;
    }

    /* Pass 2: vugrad's visiting logic. */
    if (slot_add(loss, st->t_visits, 1) < 0)
        goto done;
    PyObject *top = source_of(st, loss);
    if (top == NULL && PyErr_Occurred())
        goto done;
    if (top != NULL && arrive(st, top, waiting_outputs, &frames, &depth, &capacity) < 0)
        goto done;
    while (depth > 0) {
        frame *f = &frames[depth - 1];
        if (f->next == PyTuple_GET_SIZE(f->inputs)) {
            Py_DECREF(f->inputs);
            depth--;
            continue;
        }
        PyObject *node = PyTuple_GET_ITEM(f->inputs, f->next); /* alive: the frame holds the tuple */
        f->next++;
        int wanted = requires_grad(st, node);
        if (wanted < 0)
            goto done;
        if (!wanted)
            continue;
        Py_ssize_t left;
        if (slot_add(node, st->t_visits, 1) < 0 || (left = count_add(waiting_parents, node, -1)) < 0)
            goto done;
        if (left == 0) {
            PyObject *below = source_of(st, node);
            if (below == NULL && PyErr_Occurred())
                goto done;
            if (below != NULL) {
                Py_INCREF(below);
                int rc = arrive(st, below, waiting_outputs, &frames, &depth, &capacity);
                Py_DECREF(below);
                if (rc < 0)
                    goto done;
            }
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    while (depth > 0)
        Py_DECREF(frames[--depth].inputs);
    PyMem_Free(frames);
    Py_XDECREF(waiting_parents);
    Py_XDECREF(waiting_outputs);
    Py_XDECREF(stack);
    return result;
}

/* ---- nodes_below, zero_grad, clear ---------------------------------------------------------------- */

/* Every TensorNode below top (itself included), each once: a new list (core._nodes_below). */
static PyObject *nodes_below(graph_state *st, PyObject *top)
{
    PyObject *seen = PySet_New(NULL), *found = PyList_New(0);
    Py_ssize_t next = 0;
    if (seen == NULL || found == NULL || check_node(st, top) < 0 || PySet_Add(seen, top) < 0 ||
        PyList_Append(found, top) < 0)
        goto fail;
    /* `found` doubles as the work list: every node in it is visited once, in order. */
    while (next < PyList_GET_SIZE(found)) {
        PyObject *node = PyList_GET_ITEM(found, next++);
        PyObject *source = source_of(st, node);
        PyObject *inputs = source == NULL ? NULL : inputs_of(st, source);
        if (PyErr_Occurred())
            goto fail;
        for (Py_ssize_t i = 0; inputs != NULL && i < PyTuple_GET_SIZE(inputs); i++) {
            PyObject *parent = PyTuple_GET_ITEM(inputs, i);
            int known = check_node(st, parent) < 0 ? -1 : PySet_Contains(seen, parent);
            if (known < 0 || (!known && (PySet_Add(seen, parent) < 0 || PyList_Append(found, parent) < 0)))
                goto fail;
        }
    }
    Py_DECREF(seen);
    return found;
fail:
    Py_XDECREF(seen);
    Py_XDECREF(found);
    return NULL;
}

VG_BOUNDARY(zero_grad)
{
    graph_state *st = state_of(module);
    if (vg_check_nargs("zero_grad", nargs, 1) < 0 || !registered(st))
        return NULL;
    PyObject *nodes = nodes_below(st, args[0]);
    if (nodes == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(nodes); i++) /* drop every gradient: it reads as zeros */
        set_slot(PyList_GET_ITEM(nodes, i), st->t_grad, Py_None);
    Py_DECREF(nodes);
    Py_RETURN_NONE;
}

VG_BOUNDARY(clear_graph)
{
    graph_state *st = state_of(module);
    if (vg_check_nargs("clear", nargs, 1) < 0 || !registered(st))
        return NULL;
    PyObject *nodes = nodes_below(st, args[0]), *zero = PyLong_FromLong(0);
    if (nodes == NULL || zero == NULL) {
        Py_XDECREF(nodes);
        Py_XDECREF(zero);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(nodes); i++) {
        PyObject *node = PyList_GET_ITEM(nodes, i), *source = SLOT(node, st->t_source);
        if (source != NULL && source != Py_None) {
            if (PyObject_TypeCheck(source, st->opnode_type)) {
                set_slot(source, st->o_inputs, Py_None);
                set_slot(source, st->o_outputs, Py_None);
            }
            set_slot(node, st->t_source, Py_None);
        }
        set_slot(node, st->t_visits, zero);
        set_slot(node, st->t_numparents, zero);
    }
    Py_DECREF(zero);
    Py_DECREF(nodes);
    Py_RETURN_NONE;
}
