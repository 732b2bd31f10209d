from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("labs", "0008_class_hours")]

    operations: list[migrations.operations.base.Operation] = []
