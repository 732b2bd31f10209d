from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LabsConfig(AppConfig):
    name = "labs"
    verbose_name = _("Labs")

    def import_models(self) -> None:
        super().import_models()
        # Models kept out of labs/models.py (the layout's size limit) register with the app's own here.
        from labs import class_hours_models  # noqa: F401
