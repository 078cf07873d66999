<?php

/**
 * PHPUnit bootstrap for the Flysystem adapter tests.
 *
 * With `composer install` (league/flysystem, league/flysystem-adapter-test-utilities,
 * spiral/goridge) composer's autoloader is used. Without composer, set FLYSYSTEM_SRC to a
 * directory laid out as
 *
 *     $FLYSYSTEM_SRC/flysystem/              src/ of league/flysystem 3.x, including
 *     $FLYSYSTEM_SRC/flysystem/AdapterTestUtilities/   (src/AdapterTestUtilities of the same repo)
 *     $FLYSYSTEM_SRC/goridge/                src/ of spiral/goridge v4
 *     $FLYSYSTEM_SRC/mime-type-detection/    src/ of league/mime-type-detection (optional: Debian's
 *                                            php-league-mime-type-detection is used otherwise)
 *
 * and this file registers a small PSR-4 autoloader for them and for S3Rpc\ (../src).
 */

declare(strict_types=1);

if (is_file(__DIR__ . '/../vendor/autoload.php')) {
    require __DIR__ . '/../vendor/autoload.php';
    return;
}

$src = getenv('FLYSYSTEM_SRC');
if ($src === false || !is_file(rtrim($src, '/') . '/flysystem/AdapterTestUtilities/FilesystemAdapterTestCase.php')) {
    fwrite(STDERR, "Set FLYSYSTEM_SRC to a directory holding flysystem/ (with AdapterTestUtilities/) and goridge/ sources; see tests/bootstrap.php.\n");
    exit(2);
}
$src = rtrim($src, '/');

$mimeTypeDetection = is_dir($src . '/mime-type-detection') ? $src . '/mime-type-detection' : '/usr/share/php/League/MimeTypeDetection';
$prefixes = [
    'League\\Flysystem\\' => $src . '/flysystem/',
    'League\\MimeTypeDetection\\' => $mimeTypeDetection . '/',
    'Spiral\\Goridge\\' => $src . '/goridge/',
    'S3Rpc\\' => dirname(__DIR__) . '/src/',
];
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

require $src . '/flysystem/AdapterTestUtilities/test-functions.php';
