"""Evaluation metrics (L1, PSNR, SSIM, LPIPS, AKD, MKR, AED) and pose-evaluation tables."""
