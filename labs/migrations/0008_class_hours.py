import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("labs", "0007_save_points")]

    operations: list[migrations.operations.base.Operation] = [
        migrations.AlterField(
            model_name="guest",
            name="desired_state",
            field=models.CharField(
                choices=[("running", "running"), ("stopped", "stopped"), ("paused", "paused"), ("saved", "saved")],
                default="running",
                max_length=8,
                verbose_name="desired state",
            ),
        ),
        migrations.CreateModel(
            name="ClassSchedule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("days", models.CharField(max_length=7, verbose_name="days")),
                ("start", models.TimeField(verbose_name="class starts")),
                ("end", models.TimeField(verbose_name="class ends")),
                (
                    "outside",
                    models.CharField(
                        choices=[
                            ("save", "saved (xl save: memory freed, programs resume where they were)"),
                            ("shutdown", "shut down"),
                        ],
                        default="save",
                        max_length=8,
                        verbose_name="outside class hours, VMs are",
                    ),
                ),
                (
                    "students_may_wake",
                    models.BooleanField(default=False, verbose_name="students may wake their VM outside class hours"),
                ),
                ("applied_at", models.DateTimeField(blank=True, null=True, verbose_name="last applied")),
                (
                    "lab",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="class_hours",
                        to="labs.lab",
                        verbose_name="lab",
                    ),
                ),
            ],
            options={"verbose_name": "class hours", "verbose_name_plural": "class hours"},
        ),
    ]
