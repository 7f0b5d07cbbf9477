"""The shared vocabulary of server and clients: ids, positions, event types, filters, the
close-code catalogue with its reconnect policy, and the Dapr trust check.

A leaf package: it imports nothing else of this project, so `actors/`, `gateway/` and
`clients/` can all depend on it without depending on each other.
"""
