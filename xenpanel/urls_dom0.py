"""A dom0 serves no page."""

urlpatterns: list = []
