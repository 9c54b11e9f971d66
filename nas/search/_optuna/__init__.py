"""Every direct use of Optuna's tables and private modules, in one place: the private API on
its objects (`api`), the RDB under its cache and a worker's writes (`rdb`), a worker's reads
and claims (`reads`), read-only snapshots (`snapshot`), bulk queueing (`queue`), the schema
and its indexes (`schema`), and the gRPC proxy's server and client (`grpc`). Nothing else in
skipnas imports an Optuna module or reads an attribute whose name starts with `_`
(tests/test_structure.py)."""
