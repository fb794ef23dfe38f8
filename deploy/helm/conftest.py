"""pytest: the chart's symlinks (bookshop/services to the repository's services/,
bookshop/observability to observability/, bookshop/postgres to deploy/compose/postgres/) lead
back into the repository, and pytest follows symlinks: without this, a run from the
repository's root would collect every service's tests a second time under these paths."""

collect_ignore = ["bookshop/services", "bookshop/observability", "bookshop/postgres"]
