"""Reading and validating raw files: whole tables (``readers``) and chunks (``stream``); bad
input raises one :class:`~recforge.data.read.readers.DataError` naming file, line and column."""
