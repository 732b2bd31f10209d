from __future__ import annotations

from django.urls import path

from labs import auth_views, batch_views, console_views, key_views, token_views, usage_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz/", views.healthz, name="healthz"),
    path("whoami/", views.whoami, name="whoami"),
    path("vms/", views.my_vms, name="my_vms"),
    path("keys/", key_views.ssh_key_list, name="ssh_keys"),
    path("keys/<int:pk>/delete/", key_views.ssh_key_delete, name="ssh_key_delete"),
    path("tokens/", token_views.api_token_list, name="api_tokens"),
    path("tokens/<int:pk>/revoke/", token_views.api_token_revoke, name="api_token_revoke"),
    path("vms/<int:pk>/", views.guest_detail, name="guest_detail"),
    path("vms/<int:pk>/live/", views.guest_live, name="guest_live"),
    path("vms/<int:pk>/usage/", usage_views.guest_usage, name="guest_usage"),
    path("vms/<int:pk>/usage.json", usage_views.guest_usage_json, name="guest_usage_json"),
    path("vms/<int:pk>/console/ticket/", console_views.console_ticket, name="console_ticket"),
    path("vms/<int:pk>/confirm/<str:action>/", views.guest_confirm, name="guest_confirm"),
    path("vms/<int:pk>/action/<str:action>/", views.guest_action, name="guest_action"),
    path("labs/", views.lab_list, name="lab_list"),
    path("labs/new/", batch_views.lab_create, name="lab_create"),
    path("labs/<int:pk>/", views.lab_detail, name="lab_detail"),
    path("labs/<int:pk>/live/", views.lab_live, name="lab_live"),
    path("labs/<int:pk>/accounts/", auth_views.lab_accounts, name="lab_accounts"),
    path("labs/<int:pk>/guests.csv", views.lab_guests_csv, name="lab_guests_csv"),
    path("labs/<int:pk>/sparklines.json", usage_views.lab_sparklines, name="lab_sparklines"),
    path("labs/<int:pk>/usage/", usage_views.lab_usage, name="lab_usage"),
    path("labs/<int:pk>/usage.csv", usage_views.lab_usage_csv, name="lab_usage_csv"),
    path(
        "labs/<int:pk>/students/<int:user_pk>/password/",
        auth_views.student_password_confirm,
        name="student_password_confirm",
    ),
    path(
        "labs/<int:pk>/students/<int:user_pk>/password/reset/",
        auth_views.student_password_reset,
        name="student_password_reset",
    ),
    path(
        "labs/<int:pk>/students/<int:user_pk>/password/new/",
        auth_views.student_password_new,
        name="student_password_new",
    ),
    path("labs/<int:pk>/teardown/", views.lab_confirm_teardown, name="lab_confirm_teardown"),
    path("labs/<int:pk>/expiry/", views.lab_expiry, name="lab_expiry"),
    path("labs/<int:pk>/action/<str:action>/", views.lab_action, name="lab_action"),
    path("hosts/", views.host_list, name="host_list"),
    path("hosts/<int:pk>/", views.host_detail, name="host_detail"),
    path("hosts/<int:pk>/usage/", usage_views.host_usage, name="host_usage"),
    path("hosts/<int:pk>/usage.json", usage_views.host_usage_json, name="host_usage_json"),
]
