// placeholder: filled by the EAGLE work (#12)
