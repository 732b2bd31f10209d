from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("labs", "0005_usage_samples")]

    operations: list[migrations.operations.base.Operation] = []
