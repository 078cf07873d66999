<?php

/**
 * Autoloading without composer, for the package's tests and the repository's examples.
 *
 * With `composer install` in php/ this file is not needed (use vendor/autoload.php). Without
 * it, the sources of spiral/goridge 4.x and league/flysystem 3.x come from a directory laid out
 * like the CI machine's ../shared/php-vendor (see its README):
 *
 *     spiral-goridge/src/      Spiral\Goridge\
 *     league-flysystem/src/    League\Flysystem\ (with AdapterTestUtilities/ for the tests)
 *
 * looked up in this order: $S3RPC_PHP_VENDOR, then ../shared/php-vendor beside the repository.
 * league/mime-type-detection comes from Debian's php-league-mime-type-detection.
 *
 * Returns null when everything was found, else the reason (the caller says it and stops).
 */

declare(strict_types=1);

return (static function (): ?string {
    $package = dirname(__DIR__);
    $prefixes = ['S3Rpc\\' => $package . '/src/', 'S3Rpc\\Tests\\' => __DIR__ . '/'];
    if (is_file($package . '/vendor/autoload.php')) {
        require_once $package . '/vendor/autoload.php';
    } else {
        $candidates = array_values(array_filter([
            getenv('S3RPC_PHP_VENDOR') ?: null,
            dirname($package, 2) . '/shared/php-vendor',
        ]));
        $vendor = null;
        foreach ($candidates as $candidate) {
            if (is_file($candidate . '/spiral-goridge/src/RPC/RPC.php')) {
                $vendor = rtrim($candidate, '/');
                break;
            }
        }
        if ($vendor === null) {
            return 'no vendor/ in php/ (composer install) and no spiral-goridge/src/ in '
                . implode(' or ', $candidates) . ' (set S3RPC_PHP_VENDOR)';
        }
        $prefixes['Spiral\\Goridge\\'] = $vendor . '/spiral-goridge/src/';
        if (is_dir($vendor . '/league-flysystem/src')) {
            $prefixes['League\\Flysystem\\'] = $vendor . '/league-flysystem/src/';
        }
        $mime = '/usr/share/php/League/MimeTypeDetection/autoload.php';
        if (is_file($mime)) {
            require_once $mime;
        } elseif (is_dir($vendor . '/league-mime-type-detection/src')) {
            $prefixes['League\\MimeTypeDetection\\'] = $vendor . '/league-mime-type-detection/src/';
        }
    }
    // Longest prefix first, so S3Rpc\Tests\ wins over S3Rpc\.
    uksort($prefixes, static fn(string $a, string $b): int => strlen($b) <=> strlen($a));
    spl_autoload_register(static function (string $class) use ($prefixes): void {
        foreach ($prefixes as $prefix => $dir) {
            if (str_starts_with($class, $prefix)) {
                $file = $dir . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
                if (is_file($file)) {
                    require $file;
                }
                return;
            }
        }
    });

    return null;
})();
