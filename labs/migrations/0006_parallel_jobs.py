import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("labs", "0005_usage_samples")]

    operations: list[migrations.operations.base.Operation] = [
        migrations.AddField(
            model_name="host",
            name="jobs_at_a_time",
            field=models.PositiveSmallIntegerField(
                default=2,
                help_text=(
                    "Jobs this host's worker runs at once (guests built side by side); changes apply in seconds."
                ),
                validators=[
                    django.core.validators.MinValueValidator(1),
                    django.core.validators.MaxValueValidator(8),
                ],
                verbose_name="jobs at a time",
            ),
        ),
    ]
