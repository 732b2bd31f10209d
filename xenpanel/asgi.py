"""The ASGI process beside gunicorn: only the console websockets (`/ws/console/<guest pk>/`).

gunicorn serves every page; nginx (deploy/) and `make run` send `/ws/` here.
The socket authenticates with the Django session cookie (AuthMiddlewareStack)
and its Origin must be one of ALLOWED_HOSTS (AllowedHostsOriginValidator);
the consumer then takes its one-time ticket and checks the guest's access
rules. Plain HTTP gets 404, except `/ws/healthz` for a load balancer.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xenpanel.settings")
# Sets Django up before the consumer's models are imported.
get_asgi_application()

from channels.auth import AuthMiddlewareStack  # type: ignore[import-untyped]  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # type: ignore[import-untyped]  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # type: ignore[import-untyped]  # noqa: E402
from django.urls import path  # noqa: E402

from labs.consumers import ConsoleConsumer  # noqa: E402


async def http_app(scope, receive, send) -> None:
    """No pages here: 404, or 200 on /ws/healthz."""
    ok = scope["path"] in ("/ws/healthz", "/ws/healthz/")
    body = b"ok\n" if ok else b"Not Found\n"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if ok else 404,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


websocket_urlpatterns = [path("ws/console/<int:pk>/", ConsoleConsumer.as_asgi())]

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
