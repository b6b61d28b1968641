# core.pxd — the types Cython compiles vgrad/core.py with: the two node classes as extension types (their
# attributes as C fields, read and written directly by the compiled graph machinery), and the types of the
# graph functions' local variables. The code is core.py's; this file only declares. The fields must be the
# __slots__ of core.py's classes (tests/test_graph_engine.py checks that they are).
cimport cython


cdef class TensorNode:
    cdef public object name, value, source, _grad, debug, numparents, visits, requires_grad
    cdef dict __dict__
    cdef object __weakref__


cdef class OpNode:
    cdef public object op, context, inputs, outputs, visits
    cdef dict __dict__
    cdef object __weakref__


@cython.locals(node=TensorNode, opnode=OpNode, values=list, tracked=bint, untracked=bint, several=bint)
cpdef _apply(cls, tuple inputs, dict kwargs)

@cython.locals(node=TensorNode, parent=TensorNode, source=OpNode, seen=set, stack=list, found=list)
cpdef list _nodes_below(TensorNode top)

@cython.locals(node=TensorNode)
cpdef _zero_grad(TensorNode top)

@cython.locals(node=TensorNode, source=OpNode)
cpdef _clear(TensorNode top)

@cython.locals(op=OpNode, node=TensorNode, parent=TensorNode, waiting_parents=dict, waiting_outputs=dict,
               stack=list, pending=list)
cpdef _backpropagate(TensorNode loss)

@cython.locals(node=TensorNode, outputs=list, i=Py_ssize_t, fresh=bint)
cpdef _run_backward(OpNode opnode)

cpdef object grad_dtype(object value)
