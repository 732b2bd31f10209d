from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from labs.api import api
from labs.auth_views import PasswordChangeView
from labs.error_views import rq_urls
from labs.forms import AdminLoginForm, LoginForm

admin.site.login_form = AdminLoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    # The job-queue dashboard, answering a page of its own while Redis is down.
    path("rq/", include(rq_urls())),
    path("login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", PasswordChangeView.as_view(), name="password_change"),
    path("i18n/", include("django.conf.urls.i18n")),
    # The JSON API for scripts, its OpenAPI schema (openapi.json) and docs page (docs).
    path("api/v1/", api.urls),
    path("", include("labs.urls")),
]

# A roster too big to read comes back to its form; other bad requests get the panel's 400 page.
handler400 = "labs.error_views.bad_request"
