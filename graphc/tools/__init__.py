"""Tools around the compiler: the command line (cli), benchmarks (bench), the demo,
inspection (explain), plots, graph drawing and notebook displays.
"""
