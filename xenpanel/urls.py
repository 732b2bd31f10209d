from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from labs.auth_views import PasswordChangeView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("rq/", include("django_rq.urls")),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", PasswordChangeView.as_view(), name="password_change"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("labs.urls")),
]
