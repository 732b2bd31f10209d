from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("labs", "0007_save_points")]

    operations: list[migrations.operations.base.Operation] = []
