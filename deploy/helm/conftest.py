"""pytest: bookshop/services is a symlink to the repository's services/ (the chart reads the
service folders through it), and pytest follows symlinks: without this, a run from the
repository's root would collect every service's tests a second time under this path."""

collect_ignore = ["bookshop/services"]
