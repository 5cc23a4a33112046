
# ---- appended by ev's scripts/bench --vs-evennia (bench only, never production) ----
# Loopback only, on ports the bench picked free; the web server, web client
# and websocket are off (the bench speaks telnet only).
TELNET_PORTS = [@TELNET_PORT@]
TELNET_INTERFACES = ["127.0.0.1"]
SSL_ENABLED = False
SSH_ENABLED = False
WEBSERVER_ENABLED = False
WEBCLIENT_ENABLED = False
WEBSOCKET_CLIENT_ENABLED = False
WEBSERVER_PORTS = [(@WEB_PORT@, @WEB_PROXY_PORT@)]
WEBSERVER_INTERFACES = ["127.0.0.1"]
WEBSOCKET_CLIENT_PORT = @WEBSOCKET_PORT@
WEBSOCKET_CLIENT_INTERFACE = "127.0.0.1"
AMP_HOST = "127.0.0.1"
AMP_PORT = @AMP_PORT@
AMP_INTERFACE = "127.0.0.1"
GAME_INDEX_ENABLED = False
IRC_ENABLED = False
GRAPEVINE_ENABLED = False
DISCORD_ENABLED = False
# Throttles lifted for the run (the same values as Evennia's own
# server/profiling/settings_mixin.py for its dummyrunner).
CREATION_THROTTLE_LIMIT = None
CREATION_THROTTLE_TIMEOUT = None
LOGIN_THROTTLE_LIMIT = None
LOGIN_THROTTLE_TIMEOUT = None
MAX_CONNECTION_RATE = 100000
MAX_COMMAND_RATE = 100000
MAX_CHAR_LIMIT = 100000
IDLE_TIMEOUT = -1
# Bench-only cheap password hash: so that logging in many accounts measures
# the game and not PBKDF2 (Django's default, 1,000,000+ iterations).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
