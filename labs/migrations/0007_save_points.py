import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import labs.save_point_models


class Migration(migrations.Migration):
    dependencies = [
        ("labs", "0006_parallel_jobs"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="studentquota",
            name="max_save_points",
            field=models.PositiveIntegerField(
                default=labs.save_point_models.default_max_save_points, verbose_name="maximum save points"
            ),
        ),
        migrations.CreateModel(
            name="SavePoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=64, verbose_name="label")),
                ("volume", models.CharField(max_length=127, verbose_name="volume")),
                (
                    "method",
                    models.CharField(
                        choices=[("thin", "thin snapshot"), ("copy", "full copy")],
                        max_length=4,
                        verbose_name="made as",
                    ),
                ),
                ("size_mb", models.PositiveIntegerField(verbose_name="size (MiB)")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("taking", "being taken"),
                            ("ready", "ready"),
                            ("deleting", "being deleted"),
                        ],
                        default="taking",
                        max_length=8,
                        verbose_name="status",
                    ),
                ),
                ("lab_wide", models.BooleanField(default=False, verbose_name="taken for the whole lab")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, verbose_name="taken")),
                (
                    "guest",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="save_points",
                        to="labs.guest",
                        verbose_name="guest",
                    ),
                ),
                (
                    "taken_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "save point",
                "verbose_name_plural": "save points",
                "ordering": ["guest", "created_at"],
                "constraints": [models.UniqueConstraint(fields=("guest", "volume"), name="save_point_volume_unique")],
            },
        ),
    ]
