"""Running compiled code: loading modules (loader), binding inputs (binding), the CUDA
runtime (cuda), thread and collector guards, the Dask driver (distributed).
"""
