"""Database connections shared by the stores: SQLite files and PostgreSQL servers.

The processed-message store of the loop guard and the key directory each have an SQLite
backend (one file in a data directory, safe for several processes) and a PostgreSQL backend
(several gateway nodes). Opening, configuring and error mapping live here, once.
"""
