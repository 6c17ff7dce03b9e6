"""Moving a DVC 3 project to repro (``repro init --from-dvc``): its pipelines, data, settings
and hash memo, read where DVC keeps them and written as repro's, reusing its cache as it is."""
