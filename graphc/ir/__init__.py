"""The graph IR: nodes and the op registry (graph, ops, special), where SymPy may fold
(fold), index maps (indexing), numpy interop.
"""
