from chassis.migrations import run_migrations

run_migrations()
