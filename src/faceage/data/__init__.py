"""Reading raw face datasets: layouts, image decoding/validation, splits and the synthetic demo set."""
