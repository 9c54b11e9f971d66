"""Storages: study names and URLs (`urls`), opening a storage and a study in it (`backends`),
SQLite's locked transactions (`sqlite`), locks between processes (`locks`), journal files
(`journal`), storage failures in one line (`failures`), and the gRPC storage proxy's clients
(`proxy`) and server (`server`)."""
