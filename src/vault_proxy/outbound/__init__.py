"""The one guarded way out: every upstream connection the vault makes is dialled here.

``destination`` decides where an HTTP call may go (the service's origin, a path under its base path);
``dial`` resolves once through the address policy and connects to a checked address; ``http1`` is the
keep-alive HTTP/1.1 pool and ``clients`` the front the features use (aiohttp behind ``--http-proxy``,
for OAuth token endpoints too).
"""
