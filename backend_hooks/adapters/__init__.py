"""The adapters to the outside, one module each: ``redis_store`` (the one module that
speaks Redis: connection, the Lua scripts' runner, Redis time) and ``gcs`` (the bucket).
The crypto, ``envelope``, is pure and stays in the contract."""
