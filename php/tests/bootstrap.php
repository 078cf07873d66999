<?php

/**
 * PHPUnit bootstrap: composer's autoloader when php/vendor exists, else tests/autoload.php
 * (spiral/goridge and league/flysystem sources from $S3RPC_PHP_VENDOR or ../shared/php-vendor).
 * Exits with status 2 and the reason when the sources cannot be found.
 */

declare(strict_types=1);

$why = require __DIR__ . '/autoload.php';
if ($why !== null) {
    fwrite(STDERR, "s3rpc PHP tests: $why\n");
    exit(2);
}
if (!function_exists('mock_function') && class_exists(League\Flysystem\Filesystem::class)) {
    $functions = (new ReflectionClass(League\Flysystem\Filesystem::class))->getFileName();
    $candidates = [
        dirname((string) $functions) . '/AdapterTestUtilities/test-functions.php',   // flysystem src/ checkout
        dirname(__DIR__) . '/vendor/league/flysystem-adapter-test-utilities/test-functions.php',
    ];
    foreach ($candidates as $file) {
        if (is_file($file)) {
            require_once $file;
            break;
        }
    }
}
