from django.urls import path

from labs import views

urlpatterns = [
    path("", views.home, name="home"),
]
