"""graphc's version: one place, imported by the package and by the stages that stamp it into
generated files and cache keys (loader, plancache, codegen)."""

__version__ = "0.1.0"
