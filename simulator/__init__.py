"""A midjourney-proxy-compatible upstream simulator (profiles, faults, real images).

Start one with :func:`simulator.server.start`; the state model is
:class:`simulator.models.Simulator`, the HTTP layer :func:`simulator.app.create_app`.
"""
